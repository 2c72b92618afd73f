"""Stream sessions on a real server: 30 frames through both modes equal the CLI bit for bit, state kept between
requests, realtime drops, keyframe requests, slot exhaustion (503 + Retry-After) and idle reaping."""

from __future__ import annotations

import time

import pytest

from s2vc_clients import ServerError
from s2vc.bitstream import UnitType, read_stream
from s2vc.transport.streams import frame_bytes, frame_to_bytes

from .test_server_common import HEIGHT, KEY, WIDTH, cli, client_fixture, frames, local_decode, server_fixture, write_video

MAX_SESSIONS = 3
IDLE_S = 2.0
N = 30


server = server_fixture("streams", api_keys=KEY, max_sessions=MAX_SESSIONS, idle_timeout_s=IDLE_S)
client = client_fixture()


@pytest.fixture(autouse=True)
def close_what_each_test_opens(client, monkeypatch):
    """Every stream a test opens is closed after it, also when it fails or skips half-way (a leftover session
    held a slot and made the 503 and idle-reaping tests fail, issue 17.12)."""
    opened: list[str] = []
    open_stream = client.open_stream

    def tracking(**kwargs):
        info = open_stream(**kwargs)
        opened.append(info["id"])
        return info

    monkeypatch.setattr(client, "open_stream", tracking)
    yield
    for stream_id in opened:
        try:
            client.close_stream(stream_id)
        except ServerError:
            pass  # already closed (by the test, or reaped)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """30 frames as raw I420, and what `s2vc encode` / `s2vc decode` make of them."""
    folder = tmp_path_factory.mktemp("ref")
    yuv = write_video(folder / "in.yuv", frames(N))
    cli("encode", yuv, folder / "ref.s2vc", "--size", f"{WIDTH}x{HEIGHT}", "--fps", "25")
    cli("decode", folder / "ref.s2vc", folder / "ref.yuv")
    return yuv.read_bytes(), (folder / "ref.s2vc").read_bytes(), (folder / "ref.yuv").read_bytes()


def _frame_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_encode_stream_equals_cli_over_several_requests(client, reference):
    yuv, expected, _ = reference
    stream = client.open_stream(width=WIDTH, height=HEIGHT, fps=25, realtime=False)
    assert stream["frame_bytes"] == frame_bytes("i420", WIDTH, HEIGHT)
    chunks = _frame_chunks(yuv, stream["frame_bytes"])
    assert len(chunks) == N
    replies = [client.send_frames(stream["id"], chunks[:12]), client.send_frames(stream["id"], chunks[12:20])]
    assert client.stream(stream["id"])["frames"] == 20  # the session kept its state between the requests
    replies.append(client.send_frames(stream["id"], chunks[20:], end=True))
    for reply in replies:
        assert reply.errors == [] and reply.drops == []
    assert [len(r.data) for r in replies] == [13, 8, 11]  # the header first, then one unit per frame, END last
    assert b"".join(r.bitstream for r in replies) == expected
    with pytest.raises(ServerError) as gone:  # end=true closed the session
        client.stream(stream["id"])
    assert gone.value.status == 410


def test_decode_stream_equals_cli(client, reference):
    _, bitstream, expected = reference
    stream = client.open_stream(mode="decode", width=WIDTH, height=HEIGHT, realtime=False)
    odd_chunks = _frame_chunks(bitstream, 777)  # units cut anywhere: the server reassembles them
    reply = client.send_frames(stream["id"], odd_chunks)
    assert reply.errors == [] and len(reply.data) == N
    assert reply.bitstream == expected
    with pytest.raises(ServerError) as gone:  # the END unit of the bitstream ended the session
        client.stream(stream["id"])
    assert gone.value.status == 410


def test_decode_stream_to_rgb24_matches_the_codec(client, reference):
    _, bitstream, _ = reference
    stream = client.open_stream(mode="decode", width=WIDTH, height=HEIGHT, pixel_format="rgb24")
    reply = client.send_frames(stream["id"], [bitstream], end=True)
    assert reply.data == [frame.tobytes() for frame in local_decode(bitstream)]


def test_realtime_stream_drops_what_it_cannot_code_in_time(client):
    stream = client.open_stream(width=64, height=64, realtime=True)
    burst = [frame_to_bytes("i420", f) for f in frames(N, 64, 64)]
    reply = client.send_frames(stream["id"], [b"".join(burst)], end=True)  # 30 frames at once into an inbox of 4
    params, units = read_stream(reply.bitstream)
    coded = [u for u in units if u.type in (UnitType.I, UnitType.P)]
    assert reply.drops and {d["reason"] for d in reply.drops} <= {"inbox_full", "stale"}
    assert len(coded) + len(reply.drops) == N  # every frame is accounted for
    assert sorted({d["frame"] for d in reply.drops}) == sorted(d["frame"] for d in reply.drops)
    assert len(local_decode(reply.bitstream)) == len(coded)  # what was coded is still one valid stream


def test_keyframe_request_codes_an_i_frame(client):
    stream = client.open_stream(width=64, height=64, realtime=False)
    pictures = [frame_to_bytes("i420", f) for f in frames(5, 64, 64)]
    first = client.send_frames(stream["id"], pictures[:3])
    second = client.send_frames(stream["id"], pictures[3:], keyframe=True, end=True)
    types = [read_stream(first.bitstream + b"".join(second.data), require_end=True)[1][i].type for i in range(5)]
    assert types == [UnitType.I, UnitType.P, UnitType.P, UnitType.I, UnitType.P]


def test_full_server_answers_503_with_retry_after_and_frees_slots_on_close(client):
    ids = [client.open_stream(width=64, height=64)["id"] for _ in range(MAX_SESSIONS)]
    with pytest.raises(ServerError) as full:
        client.open_stream(width=64, height=64)
    assert full.value.status == 503 and "max_sessions" in full.value.detail
    assert 1 <= int(full.value.headers["retry-after"]) <= IDLE_S + 1
    for stream_id in ids:  # the live sessions were not evicted for the newcomer
        assert client.stream(stream_id)["id"] == stream_id
    client.close_stream(ids.pop())
    ids.append(client.open_stream(width=64, height=64)["id"])
    for stream_id in ids:
        client.close_stream(stream_id)


def test_idle_session_is_reaped(client):
    stream = client.open_stream(width=64, height=64)
    time.sleep(IDLE_S + 1.5)
    with pytest.raises(ServerError) as gone:
        client.stream(stream["id"])
    assert gone.value.status == 410 and "idle" in gone.value.detail
    assert "s2vc_sessions_closed_total{reason=\"idle\"}" in client.metrics_text()
