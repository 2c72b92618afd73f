"""Prometheus metrics (prefix ``s2vc_``), one registry per app, and the request-counting ASGI middleware.

No label ever carries a session or job id: routes are labelled by their template (``/v1/streams/{stream_id}``).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
BPP_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
OPS = ("encode", "decode")
TRANSPORTS = ("stream", "job", "webrtc")
CALL_MODES = ("preview", "bitstream")
DROP_REASONS = ("inbox_full", "stale", "error", "cancelled", "shutdown")
STAGES = ("queue", "codec", "networks", "unet", "vae", "entropy")


class Metrics:
    """Every metric the server exports. ``registry`` is private to one app, so several apps can live in a process."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("s2vc_requests", "HTTP requests by route, method and status code", ["route", "method", "code"], registry=registry)
        self.request_duration = Histogram(
            "s2vc_request_duration_seconds", "HTTP request duration (a stream request lasts as long as its body)",
            ["route", "method"], buckets=REQUEST_BUCKETS, registry=registry,
        )
        self.sessions = Gauge("s2vc_sessions_active", "Open sessions by transport (stream, job) and mode (encode, decode)", ["transport", "mode"], registry=registry)
        self.calls = Gauge("s2vc_webrtc_calls", "Open WebRTC calls by mode (preview, bitstream)", ["mode"], registry=registry)
        self.sessions_rejected = Counter("s2vc_sessions_rejected", "Sessions refused because every slot was taken", registry=registry)
        self.sessions_closed = Counter("s2vc_sessions_closed", "Sessions closed, by reason (client, end, idle, duration, shutdown)", ["reason"], registry=registry)
        self.frames = Counter("s2vc_frames", "Frames coded by operation (encode, decode) and frame type (I, P)", ["op", "type"], registry=registry)
        self.dropped = Counter("s2vc_dropped_frames", "Frames dropped, by reason (inbox_full, stale, error, cancelled)", ["reason"], registry=registry)
        self.stage = Histogram(
            "s2vc_stage_duration_seconds", "Per-frame stage durations: queue (waiting in an inbox), codec (a whole batch step), "
            "unet, vae, entropy, networks (intra/inter codec nets)", ["stage"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.batch_size = Histogram("s2vc_batch_size", "Frames per scheduler tick", ["op"], buckets=BATCH_BUCKETS, registry=registry)
        self.queue_depth = Gauge("s2vc_queue_depth", "Frames waiting in session inboxes", registry=registry)
        self.bpp = Histogram("s2vc_bits_per_pixel", "Bits per pixel of each coded frame", ["op"], buckets=BPP_BUCKETS, registry=registry)
        self.bytes_in = Counter("s2vc_bytes_in", "Payload bytes received (frames, units, uploads)", ["transport"], registry=registry)
        self.bytes_out = Counter("s2vc_bytes_out", "Payload bytes sent (units, frames, results)", ["transport"], registry=registry)
        self.jobs = Counter("s2vc_jobs", "Jobs finished by operation and final state", ["operation", "state"], registry=registry)
        self.engine_ready = Gauge("s2vc_engine_ready", "1 when every engine is loaded and warm", registry=registry)
        self.engine = Info("s2vc_engine", "The runtime executing the networks", registry=registry)
        self._zero_known_labels()

    def _zero_known_labels(self) -> None:
        """Export every known label set from the start (at 0), so dashboards and alerts see the series before traffic."""
        for op in OPS:
            self.batch_size.labels(op)
            self.bpp.labels(op)
            for frame_type in ("I", "P"):
                self.frames.labels(op, frame_type)
            for transport in TRANSPORTS:
                self.sessions.labels(transport, op)
            for final in ("done", "failed"):
                self.jobs.labels(op, final)
        for mode in CALL_MODES:
            self.calls.labels(mode)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        for stage in STAGES:
            self.stage.labels(stage)
        for transport in TRANSPORTS:
            self.bytes_in.labels(transport)
            self.bytes_out.labels(transport)

    def on_stage(self, stage: str, seconds: float, batch: int) -> None:
        """The codec's ``on_stage`` hook: a stage of a batch of ``batch`` frames took ``seconds``."""
        self.stage.labels(stage).observe(seconds)


class RequestMetricsMiddleware:
    """Counts every HTTP request by route template, method and status code, and times it to its last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.request_duration.labels(template, method).observe(time.perf_counter() - start)
