"""API keys, limits and bad input on a real server: 401/403 on every /v1 route, 4xx that name the limit,
server-made file names, and corrupt, truncated or foreign bitstreams answered without hurting other sessions."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from s2vc_clients import ServerError
from s2vc_server.auth import Auth
from s2vc_server.settings import Settings
from s2vc.transport.streams import frame_to_bytes

from .test_server_common import KEY, client_fixture, frames, local_encode, server_fixture, write_video

LIMITS = {"max_width": 512, "max_height": 512, "max_frame_pixels": 200_000, "max_fps": 30, "max_upload_bytes": 300_000,
          "max_stream_s": 5, "max_sessions": 4}
SOME_ID = "0123456789abcdef0123456789abcdef"


server = server_fixture("security", api_keys=f"{KEY},second-key-0123456789", **LIMITS)
client = client_fixture()


@pytest.fixture(scope="module")
def good_bitstream():
    return local_encode(frames(4, 64, 64))


def _unit_offsets(data: bytes) -> list[int]:
    """Start of each unit after the 64-byte header."""
    offsets, pos = [], 64
    while pos < len(data):
        offsets.append(pos)
        pos += 4 + int.from_bytes(data[pos : pos + 4], "big")
    return offsets


ROUTES = [
    ("POST", "/v1/jobs", {"files": {"file": ("a.mp4", b"x")}, "data": {"operation": "encode"}}),
    ("GET", f"/v1/jobs/{SOME_ID}", {}),
    ("GET", f"/v1/jobs/{SOME_ID}/result", {}),
    ("DELETE", f"/v1/jobs/{SOME_ID}", {}),
    ("POST", "/v1/streams", {"json": {"width": 64, "height": 64}}),
    ("GET", f"/v1/streams/{SOME_ID}", {}),
    ("POST", f"/v1/streams/{SOME_ID}/frames", {"content": b"\0" * 16}),
    ("DELETE", f"/v1/streams/{SOME_ID}", {}),
]


@pytest.mark.parametrize("method,path,kwargs", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_v1_route_needs_a_valid_key(server, method, path, kwargs):
    missing = httpx.request(method, server.url + path, **kwargs)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.request(method, server.url + path, headers={"Authorization": "Bearer not-a-key-of-this-server"}, **kwargs)
    assert wrong.status_code == 403
    second = httpx.request(method, server.url + path, headers={"Authorization": "Bearer second-key-0123456789"}, **kwargs)
    assert second.status_code not in (401, 403)  # every configured key is accepted


def test_health_metrics_and_docs_are_open(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json"):
        assert httpx.get(server.url + path).status_code == 200
    assert "/v1/streams/{stream_id}/frames" in httpx.get(server.url + "/openapi.json").json()["paths"]


def test_dev_mode_must_be_chosen_and_is_loud(caplog):
    with caplog.at_level(logging.WARNING, logger="s2vc.server"):
        dev = Auth(Settings(dev_mode=True, data_dir="unused"))
    assert "DEV MODE" in caplog.text
    dev.check(None)  # no key needed
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="s2vc.server"):
        keyless = Auth(Settings(data_dir="unused"))  # nothing configured: not open, a generated key is required
    assert keyless.generated and keyless.generated in caplog.text
    with pytest.raises(Exception) as refused:
        keyless.check(None)
    assert refused.value.status_code == 401


@pytest.mark.parametrize("spec,status,names", [
    ({"width": 1024, "height": 64}, 422, "max_width"),
    ({"width": 500, "height": 500}, 422, "max_frame_pixels"),
    ({"width": 64, "height": 64, "fps": 60}, 422, "max_fps"),
    ({"width": 63, "height": 64}, 422, "even"),
    ({"width": 64, "height": 64, "rate": 9}, 422, "rate point 9"),
    ({"width": 64, "height": 64, "model": "/etc"}, 404, "unknown model"),
    ({"width": 64, "height": 64, "mode": "transcode"}, 422, "mode"),
])
def test_stream_limits_name_what_was_exceeded(client, spec, status, names):
    with pytest.raises(ServerError) as refused:
        client.open_stream(**spec)
    assert refused.value.status == status and names in refused.value.detail


def test_upload_over_the_limit_is_refused_with_or_without_a_length(server, client, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 400_000)
    with pytest.raises(ServerError) as declared:
        client.submit_job(big, "encode")
    assert declared.value.status == 413 and "max_upload_bytes=300000" in declared.value.detail

    boundary = "s2vcboundary"

    def chunked():  # no Content-Length: the server counts the bytes as they arrive
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="operation"\r\n\r\nencode\r\n'.encode()
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'.encode()
        for _ in range(40):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(server.url + "/v1/jobs", content=chunked(), headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413 and "max_upload_bytes" in response.json()["detail"]
    assert not any((server.data_dir / "uploads").iterdir())  # nothing of the refused uploads was kept


def test_bad_uploads_get_a_clear_4xx(client, tmp_path, good_bitstream):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 100)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.s2vc"
    foreign.write_bytes(local_encode(frames(2, 64, 64), seed=1))
    for path, operation, expected in ((garbage, "encode", "cannot read"), (empty, "encode", "empty"),
                                      (foreign, "decode", "ModelMismatchError"), (garbage, "decode", "CorruptStreamError")):
        with pytest.raises(ServerError) as refused:
            client.submit_job(path, operation)
        assert refused.value.status == 400 and expected in refused.value.detail, (path.name, operation)


def test_truncated_and_corrupt_bitstreams_are_refused_with_the_reason(client, tmp_path, good_bitstream):
    """Since issue 17.5 a decode upload is probed whole at submission: 400 naming the problem and the last good
    frame, instead of a job that fails (or, cut at a unit boundary, reports done) later."""
    starts = _unit_offsets(good_bitstream)
    truncated = tmp_path / "truncated.s2vc"
    truncated.write_bytes(good_bitstream[: starts[2] + 10])
    corrupt = bytearray(good_bitstream)
    corrupt[starts[1] + 16] ^= 0xFF  # the first payload byte of the P unit after the I unit
    (tmp_path / "corrupt.s2vc").write_bytes(bytes(corrupt))
    for name, reason in (("truncated.s2vc", "TruncatedStreamError"), ("corrupt.s2vc", "CorruptStreamError")):
        with pytest.raises(ServerError) as refused:
            client.submit_job(tmp_path / name, "decode")
        assert refused.value.status == 400 and reason in refused.value.detail and "last good frame is frame" in refused.value.detail


def test_file_names_never_come_from_the_request(server, client, tmp_path):
    clip = write_video(tmp_path / "clip.y4m", frames(2))
    with open(clip, "rb") as f:
        response = client.http.post("/v1/jobs", data={"operation": "encode"}, files={"file": ("../../escaped.y4m", f)})
    assert response.status_code == 202
    job = client.wait_job(response.json()["id"])
    assert job["input"]["filename"] == "../../escaped.y4m"  # kept as metadata only
    stored = [p.name for p in (server.data_dir / "uploads").iterdir()] + [p.name for p in (server.data_dir / "results").iterdir()]
    assert f"{job['id']}.y4m" in stored and all(len(name.split(".")[0]) == 32 for name in stored)
    assert not list(server.data_dir.parent.rglob("escaped*"))
    assert httpx.get(server.url + "/v1/jobs/..%2F..%2Fetc", headers={"Authorization": f"Bearer {KEY}"}).status_code in (404, 422)


def test_bad_stream_bodies(client, server, good_bitstream):
    pictures = [frame_to_bytes("i420", f) for f in frames(3, 64, 64)]
    encode = client.open_stream(width=64, height=64, realtime=False)
    ragged = httpx.post(f"{server.url}/v1/streams/{encode['id']}/frames", content=pictures[0] + pictures[1][:100],
                        headers={"Authorization": f"Bearer {KEY}"})
    assert ragged.status_code == 400 and "not a whole number" in ragged.json()["detail"]
    reply = client.send_frames(encode["id"], [pictures[0], pictures[1], pictures[2][:1000]])  # chunked: no length known up front
    assert len(reply.data) == 3  # the header and two units
    assert [e["fatal"] for e in reply.errors] == [False] and "partial frame" in reply.errors[0]["message"]
    assert client.send_frames(encode["id"], [pictures[2]], end=True).errors == []  # the session goes on

    decode = client.open_stream(mode="decode", width=64, height=64)
    with pytest.raises(ServerError) as foreign:
        client.send_frames(decode["id"], [local_encode(frames(1, 64, 64), seed=1)])
    assert foreign.value.status == 400 and "ModelMismatchError" in foreign.value.detail

    starts = _unit_offsets(good_bitstream)
    corrupt = bytearray(good_bitstream)
    corrupt[starts[1] + 16] ^= 0xFF  # the first payload byte of the P unit after the I unit
    reply = client.send_frames(decode["id"], [bytes(corrupt[: starts[-1]])])  # without END: the session stays open
    assert len(reply.data) == 1  # the I-frame; then the corrupt P and the two that depend on it are refused, not guessed
    assert [e["error"] for e in reply.errors] == ["CorruptStreamError", "UnitOrderError", "UnitOrderError"]
    assert not any(e["fatal"] for e in reply.errors)

    garbage = client.send_frames(decode["id"], [b"\xff" * 64])
    assert len(garbage.errors) == 1 and garbage.errors[0]["fatal"] and "unit length" in garbage.errors[0]["message"]

    for bad_id, status in (("not-an-id", 422), (SOME_ID, 404)):
        response = httpx.post(f"{server.url}/v1/streams/{bad_id}/frames", content=b"", headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == status
    client.close_stream(decode["id"])


def test_stream_duration_limit(client):
    stream = client.open_stream(width=64, height=64)
    time.sleep(LIMITS["max_stream_s"] + 1.2)
    with pytest.raises(ServerError) as gone:
        client.stream(stream["id"])
    assert gone.value.status == 410 and "max_stream_s" in gone.value.detail


def test_still_healthy_after_all_that(server, client):
    assert httpx.get(server.url + "/v2/health/ready").json()["ready"]
    stream = client.open_stream(width=64, height=64, realtime=False)
    reply = client.send_frames(stream["id"], [frame_to_bytes("i420", f) for f in frames(2, 64, 64)], end=True)
    assert reply.errors == [] and len(reply.data) == 4
    assert server.process.poll() is None
