"""Batching across sessions and the /metrics page on a real server."""

from __future__ import annotations

import asyncio
import re

import pytest

from s2vc_clients import StreamReply
from s2vc_clients.duplex import post_frames
from s2vc.bitstream import UnitType, read_stream
from s2vc.transport.streams import frame_to_bytes

from .test_server_common import KEY, client_fixture, frames, local_decode, metric_samples, metric_value, server_fixture

SESSIONS, FRAMES = 3, 10
NAMES = [
    "s2vc_requests_total", "s2vc_request_duration_seconds_bucket", "s2vc_sessions_active", "s2vc_frames_total",
    "s2vc_dropped_frames_total", "s2vc_stage_duration_seconds_bucket", "s2vc_batch_size_bucket", "s2vc_queue_depth",
    "s2vc_bits_per_pixel_bucket", "s2vc_bytes_in_total", "s2vc_bytes_out_total", "s2vc_engine_info",
]


server = server_fixture("metrics", api_keys=KEY, max_batch=4, batch_wait_ms=20)
client = client_fixture()


@pytest.fixture(scope="module")
def concurrent(server, client):
    """Three encode sessions streaming at once, each with its own picture content."""
    streams = [client.open_stream(width=64, height=64, realtime=False) for _ in range(SESSIONS)]
    sources = [frames(FRAMES + i, 64, 64)[i:] for i in range(SESSIONS)]

    async def one(stream, pictures) -> StreamReply:
        reply = StreamReply()
        body = [frame_to_bytes("i420", p) for p in pictures]
        async for kind, data in post_frames(server.url, stream["id"], body, api_key=KEY, end=True):
            reply.add(kind, data)
        return reply

    async def all_at_once():
        return await asyncio.gather(*(one(s, p) for s, p in zip(streams, sources)))

    return asyncio.run(all_at_once()), client.metrics_text()


def test_concurrent_sessions_are_batched(concurrent):
    replies, text = concurrent
    ticks = metric_value(text, "s2vc_batch_size_count", op="encode")
    single = metric_value(text, "s2vc_batch_size_bucket", op="encode", le="1.0")
    assert metric_value(text, "s2vc_frames_total", op="encode") == SESSIONS * FRAMES
    assert single < ticks, "no scheduler tick coded more than one frame"
    assert metric_value(text, "s2vc_batch_size_sum", op="encode") == SESSIONS * FRAMES


def test_batched_units_decode_exactly_one_at_a_time(concurrent):
    """exact=True: a decoder that codes one frame at a time (the CLI) accepts every unit (the P units' state checks)."""
    replies, _ = concurrent
    for reply in replies:
        assert reply.errors == [] and reply.drops == []
        _, units = read_stream(reply.bitstream)
        assert [u.type for u in units] == [UnitType.I] + [UnitType.P] * (FRAMES - 1) + [UnitType.END]
        assert len(local_decode(reply.bitstream)) == FRAMES


def test_metrics_page_has_every_name_and_no_per_session_labels(concurrent, client):
    text = client.metrics_text()
    names = {name for name, _, _ in metric_samples(text)}
    assert not [n for n in NAMES if n not in names]
    stages = {labels["stage"] for name, labels, value in metric_samples(text) if name == "s2vc_stage_duration_seconds_count" and value > 0}
    assert {"queue", "codec", "unet", "vae", "entropy", "networks"} <= stages
    routes = {labels["route"] for name, labels, _ in metric_samples(text) if name == "s2vc_requests_total"}
    assert "/v1/streams/{stream_id}/frames" in routes and "/v1/streams" in routes
    assert metric_value(text, "s2vc_requests_total", route="/v1/streams", method="POST", code="201") == SESSIONS
    assert metric_value(text, "s2vc_bytes_in_total", transport="stream") == SESSIONS * FRAMES * 64 * 64 * 3 // 2
    assert metric_value(text, "s2vc_bytes_out_total", transport="stream") > 0
    assert metric_value(text, "s2vc_sessions_active") == 0  # every session ended with end=true
    assert metric_value(text, "s2vc_engine_info", engine="torch", model_id="tiny") == 1
    hex_id = re.compile(r"[0-9a-f]{32}")
    assert not [labels for _, labels, _ in metric_samples(text) if any(hex_id.search(v) for v in labels.values())]


def test_every_dashboard_series_is_exported(concurrent, client):
    """Each s2vc_ series a Grafana panel (deploy/grafana/dashboards/s2vc.json) queries is on the live /metrics page."""
    from .test_deploy import dashboard_metric_names

    exported = {name for name, _, _ in metric_samples(client.metrics_text())}
    wanted = dashboard_metric_names()
    assert len(wanted) >= 10
    assert sorted(wanted - exported) == []
