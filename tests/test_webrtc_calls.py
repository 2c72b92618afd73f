"""WebRTC calls against a real server on loopback: aiortc peers in this process, the server in a child process.

Both sides gather ICE candidates on 127.0.0.1 only (the server through S2VC_WEBRTC_HOSTS, the peers here by the
same patch of aioice), so no packet leaves loopback.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from s2vc_clients.call import CallPeer, FramesTrack
from s2vc_clients.errors import ServerError
from s2vc.bitstream import UnitType
from s2vc.transport.calls import Control
from s2vc.checkpoint import load_model
from s2vc.codec import Codec
from s2vc.transport.ice import restrict_host_addresses
from s2vc_server.webrtc import network

from .test_server_common import KEY, _foreman, metric_value, server_fixture, torch_threads

SIZE = (176, 144)
server = server_fixture("webrtc", api_keys=KEY, webrtc_hosts="127.0.0.1", webrtc_connect_timeout_s=4, max_sessions=6)


@pytest.fixture(scope="module", autouse=True)
def loopback_only():
    import aioice.ice

    before = aioice.ice.get_host_addresses
    restrict_host_addresses(["127.0.0.1"])
    yield
    aioice.ice.get_host_addresses = before


@pytest.fixture(scope="module")
def codec():
    with torch_threads():
        yield Codec(load_model(None), "cpu")


@pytest.fixture(scope="module")
def frames():
    import av

    return [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(width=SIZE[0], height=SIZE[1]).to_ndarray(format="rgb24")
            for f in _foreman(12)]


def run(coro):
    with torch_threads():
        return asyncio.run(asyncio.wait_for(coro, 180))


def api(server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=30, **kwargs)


def check_against_stats(peer: CallPeer) -> int:
    """Every decoded picture equals the server's reconstruction of that frame (CRC-32 in the stats)."""
    sent = {s["frame"]: s["checksum"] for s in peer.stats if s.get("checksum") is not None}
    compared = 0
    for decoded in peer.frames:
        if decoded.frame_index in sent:
            assert decoded.checksum == sent[decoded.frame_index], f"frame {decoded.frame_index} differs from the server's reconstruction"
            compared += 1
    return compared


def test_bitstream_units_decode_to_the_servers_reconstruction(server, codec, frames):
    async def call():
        peer = CallPeer(server.url, KEY, codec=codec)
        await peer.join(mode="bitstream", source=FramesTrack(frames, fps=10), checksum=True, max_width=SIZE[0], max_height=SIZE[1])
        await peer.wait_frames(6)
        await peer.wait_for(lambda: check_against_stats(peer) >= 6)
        info = api(server, "GET", f"/v1/webrtc/{peer.call_id}").json()
        await peer.hang_up()
        return peer, info

    peer, info = run(call())
    assert [u.type for u in peer.units[:2]] == [UnitType.SEQ, UnitType.I] and peer.frames[0].unit_type == "I"
    assert {d.picture.shape for d in peer.frames} == {(SIZE[1], SIZE[0], 3)}
    assert not peer.decode_errors and not peer.errors
    assert info["mode"] == "bitstream" and info["frames"] >= 6 and info["size"] == list(SIZE)
    last = peer.stats[-1]
    assert last["bytes"] > 0 and last["kbps"] > 0 and last["rates"] >= 1 and (last["width"], last["height"]) == SIZE
    assert api(server, "GET", f"/v1/webrtc/{peer.call_id}").status_code == 410


def test_a_lost_unit_makes_the_peer_ask_for_an_intra_frame_and_recover(server, codec, frames):
    lost: list[int] = []

    def lose(unit):
        if unit.frame_index == 3 and not lost:
            lost.append(unit.frame_index)
            return True
        return False

    async def call():
        peer = CallPeer(server.url, KEY, codec=codec, lose=lose)
        await peer.join(mode="bitstream", source=FramesTrack(frames, fps=10), checksum=True, max_width=SIZE[0], max_height=SIZE[1])

        def recovered() -> bool:
            later_i = [d for d in peer.frames if d.unit_type == "I" and d.frame_index > 3]
            return bool(later_i) and sum(d.frame_index > later_i[0].frame_index for d in peer.frames) >= 2

        await peer.wait_for(recovered, 90)
        await peer.hang_up()
        return peer

    peer = run(call())
    assert lost == [3]
    assert peer.keyframe_requests >= 1
    assert any("UnitOrderError" in e for e in peer.decode_errors)
    assert 3 not in {d.frame_index for d in peer.frames}
    assert check_against_stats(peer) >= 4  # after the new I-frame, decoding matches the server again


def test_preview_sends_the_reconstruction_back_as_video(server, frames):
    async def call():
        peer = CallPeer(server.url, KEY)
        await peer.join(mode="preview", source=FramesTrack(frames, fps=10), max_width=SIZE[0], max_height=SIZE[1])
        for _ in range(50):
            if peer.remote_tracks:
                break
            await asyncio.sleep(0.1)
        track = peer.remote_tracks[0]
        pictures = [await asyncio.wait_for(track.recv(), 30) for _ in range(3)]
        await peer.wait_for(lambda: len(peer.stats) >= 3)
        peer.send(Control("rate", rate=1))
        await peer.wait_for(lambda: any(s["rate"] == 1 for s in peer.stats))
        peer.send(Control("target", kbps=5.0))
        await peer.wait_for(lambda: peer.stats[-1]["target_kbps"] == 5.0)
        peer.send(Control("keyframe"))
        n = len(peer.stats)
        await peer.wait_for(lambda: any(s["unit"] == "I" for s in peer.stats[n:]))
        await peer.hang_up()
        return peer, pictures

    peer, pictures = run(call())
    assert [(p.width, p.height) for p in pictures] == [SIZE] * 3
    assert all(p.to_ndarray(format="rgb24").std() > 1 for p in pictures)  # a picture, not a blank frame
    s = peer.stats[-1]
    assert s["fps"] > 0 and s["latency_ms"] > 0 and s["bpp"] > 0 and s["checksum"] is not None
    assert not peer.errors


def test_a_room_relays_the_publishers_units(server, codec, frames):
    async def call():
        publisher = CallPeer(server.url, KEY, codec=codec)
        await publisher.join(mode="bitstream", room="r1", role="publisher")
        native = CallPeer(server.url, KEY, codec=codec)
        await native.join(mode="bitstream", room="r1", role="subscriber")
        browser = CallPeer(server.url, KEY)  # a browser-like subscriber: decoded video back
        await browser.join(mode="preview", room="r1", role="subscriber")
        with pytest.raises(ServerError) as second:
            await CallPeer(server.url, KEY).join(mode="bitstream", room="r1", role="publisher")
        rooms = api(server, "GET", "/v1/webrtc").json()["rooms"]
        sent = await publisher.publish(frames[:8], fps=10)
        await native.wait_frames(8)
        await browser.wait_for(lambda: len(browser.stats) >= 8)
        picture = await asyncio.wait_for(browser.remote_tracks[0].recv(), 30)
        for peer in (browser, native, publisher):
            await peer.hang_up()
        return publisher, native, browser, sent, second.value, rooms, picture

    publisher, native, browser, sent, second, rooms, picture = run(call())
    assert second.status == 409
    assert rooms[0]["name"] == "r1" and len(rooms[0]["subscribers"]) == 2
    assert sent == 10  # SEQ + 8 frames + END
    assert [d.frame_index for d in native.frames] == list(range(8)) and not native.decode_errors
    assert publisher.keyframes_asked >= 1  # subscribers joining asked the publisher for an I-frame
    local = codec.new_state(*SIZE)
    for unit, decoded in zip([u for u in native.units if u.type in (UnitType.I, UnitType.P)], native.frames):
        picture_here, local = codec.decode_frame(local, unit)
        assert np.array_equal(picture_here, decoded.picture)
    assert {s["checksum"] for s in browser.stats[:8]} == {d.checksum for d in native.frames}  # the room decoded the same pictures
    assert (picture.width, picture.height) == SIZE
    assert api(server, "GET", "/v1/webrtc").json()["rooms"] == []


def test_calls_end_when_the_peer_goes_away_or_never_connects(server):
    async def vanish():
        peer = CallPeer(server.url, KEY)
        await peer.join(mode="bitstream", source=FramesTrack([np.full((64, 64, 3), 90, np.uint8)], fps=5))
        await peer.close()  # no bye, no DELETE: the connection just closes
        return peer.call_id

    call_id = run(vanish())
    _wait_gone(server, call_id)

    async def silent():
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection(network.rtc_configuration([]))
        pc.createDataChannel("s2vc")
        await pc.setLocalDescription(await pc.createOffer())
        answer = api(server, "POST", "/v1/webrtc/offer", json={"sdp": pc.localDescription.sdp, "type": "offer", "mode": "bitstream"})
        await pc.close()  # the answer is never applied: ICE never starts on our side
        return answer.json()["id"]

    call_id = run(silent())
    _wait_gone(server, call_id, timeout=15)
    assert metric_value(httpx.get(server.url + "/metrics").text, "s2vc_webrtc_calls", mode="bitstream") == 0


def _wait_gone(server, call_id: str, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api(server, "GET", f"/v1/webrtc/{call_id}").status_code
        if status == 410:
            return
        time.sleep(0.2)
    raise AssertionError(f"call {call_id} still open after {timeout:g} s")


def test_bad_offers_and_messages_get_clear_errors(server, frames):
    cases = [
        ({"sdp": "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:abc\r\n", "type": "offer"}, 400),
        ({"sdp": "v=0\r\nnonsense", "type": "offer", "mode": "bitstream"}, 422),  # no data channel
        ({"sdp": "x", "type": "answer"}, 422),
        ({"sdp": "x", "type": "offer", "role": "subscriber", "mode": "bitstream"}, 422),
        ({"sdp": "x", "type": "offer", "rate": 99}, 422),
        ({"sdp": "x", "type": "offer", "model": "nope"}, 404),
        ({"sdp": "x", "type": "offer", "room": "../etc"}, 422),
    ]
    for body, status in cases:
        response = api(server, "POST", "/v1/webrtc/offer", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["detail"]
    assert httpx.post(server.url + "/v1/webrtc/offer", json=cases[0][0]).status_code == 401

    async def call():
        peer = CallPeer(server.url, KEY)
        await peer.join(mode="bitstream", source=FramesTrack(frames, fps=10), max_width=SIZE[0], max_height=SIZE[1])
        peer.channel.send("not json")
        peer.channel.send(json.dumps({"type": "rate", "rate": 99}))
        peer.channel.send(b"\x00\x01garbage")  # units from a call that does not publish
        await peer.wait_for(lambda: len(peer.errors) >= 3)
        await peer.wait_for(lambda: len(peer.units) >= 3)  # the call goes on
        await peer.hang_up()
        return peer

    peer = run(call())
    assert any("JSON" in e for e in peer.errors) and any("outside" in e for e in peer.errors)
    assert any("does not send units" in e for e in peer.errors)
    assert api(server, "GET", "/v2/health/ready").status_code == 200


def test_client_cli_streams_jobs_and_calls(server, frames, tmp_path):
    import subprocess
    import sys

    from .test_server_common import local_decode, write_video

    video = write_video(tmp_path / "in.y4m", frames[:6], fps=10)
    env = {"S2VC_URL": server.url, "S2VC_API_KEY": KEY, "S2VC_WEBRTC_HOSTS": "127.0.0.1"}

    def client(*args: str) -> subprocess.CompletedProcess:
        import os

        done = subprocess.run([sys.executable, "-m", "s2vc_clients", *args], capture_output=True, text=True, timeout=150, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return done

    client("stream", str(video), "-o", str(tmp_path / "streamed.s2vc"))
    client("job", "encode", str(video), "-o", str(tmp_path / "job.s2vc"))
    # a capture device through FFmpeg: lavfi's test source stands in for a camera (v4l2 takes the same path)
    client("stream", "testsrc=size=96x64:rate=10", "--device-format", "lavfi", "--frames", "4", "-o", str(tmp_path / "device.s2vc"))
    assert [f.shape for f in local_decode((tmp_path / "device.s2vc").read_bytes())] == [(64, 96, 3)] * 4
    assert len(local_decode((tmp_path / "streamed.s2vc").read_bytes())) == 6
    assert len(local_decode((tmp_path / "job.s2vc").read_bytes())) == 6

    done = client("call", "--publish", str(video), "--seconds", "4", "-o", str(tmp_path / "call.y4m"), "--units", str(tmp_path / "call.s2vc"),
                  "--max-width", str(SIZE[0]), "--max-height", str(SIZE[1]))
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["frames"] >= 3 and not summary["errors"], summary
    assert len(local_decode((tmp_path / "call.s2vc").read_bytes())) == summary["frames"]



def test_rate_control_in_a_call_holds_the_target(server, codec, frames):
    """A bitstream call with target_kbps on real footage: the units' bitrate at the call's frame rate stays near it.
    The target lies between the shipped model's lowest and highest rate point on these frames (measured here)."""
    fps = 10.0
    with torch_threads():
        p_kbps = [_p_frame_kbps(codec, frames, rate, fps) for rate in (0, codec.model.num_rates - 1)]
    target = round((p_kbps[0] * p_kbps[1]) ** 0.5, 1)

    async def call():
        peer = CallPeer(server.url, KEY)
        await peer.join(mode="bitstream", source=FramesTrack(frames, fps=fps), fps=fps, target_kbps=target, max_width=SIZE[0], max_height=SIZE[1])
        await peer.wait_for(lambda: len(peer.stats) >= 40, 120)
        await peer.hang_up()
        return peer

    peer = run(call())
    p_stats = [s for s in peer.stats if s["unit"] == "P"][5:]  # after the I-frame's payback
    kbps = sum(s["bytes"] for s in p_stats) * 8 * fps / 1000 / len(p_stats)
    rates = {s["rate"] for s in peer.stats}
    print(f"target {target} kbps at {fps:g} fps: held {kbps:.1f} kbps over {len(p_stats)} P-frames, rate points {sorted(rates)}")
    assert len(rates) >= 2  # it switched between rate points to meet the target
    assert abs(kbps - target) / target < 0.25


def _p_frame_kbps(codec, frames, rate: int, fps: float) -> float:
    """Mean P-frame bitrate of ``frames`` coded offline at a fixed rate point."""
    import io

    from s2vc.pipeline import encode_frames

    params = codec.sequence_params(frames[0].shape[1], frames[0].shape[0], fps, rate)
    summary, _ = encode_frames(codec, frames, io.BytesIO(), params, rate=rate, reconstruct=False)
    return sum(summary.frame_bytes[1:]) * 8 * fps / 1000 / len(summary.frame_bytes[1:])


def test_calls_and_streams_share_the_session_slots(server, frames):
    from s2vc_clients import S2VCClient

    with S2VCClient(server.url, KEY) as client:
        streams = [client.open_stream(width=64, height=64) for _ in range(6)]  # max_sessions=6: every slot taken

        async def refused():
            with pytest.raises(ServerError) as full:
                await CallPeer(server.url, KEY).join(mode="bitstream", source=FramesTrack(frames, fps=10))
            return full.value

        full = run(refused())
        assert full.status == 503 and "max_sessions" in full.detail
        client.close_stream(streams.pop()["id"])

        async def admitted():
            peer = CallPeer(server.url, KEY)
            await peer.join(mode="bitstream", source=FramesTrack(frames, fps=10), max_width=SIZE[0], max_height=SIZE[1])
            with pytest.raises(ServerError) as stream_full:  # the call holds the freed slot
                client.open_stream(width=64, height=64)
            await peer.hang_up()
            return stream_full.value

        assert run(admitted()).status == 503
        for stream in streams:
            client.close_stream(stream["id"])
