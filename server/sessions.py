"""Live stream sessions: a fixed number of slots, explicit close, an idle reaper and a duration limit.

A full server answers a new session with 503 and ``Retry-After`` (the time until the next slot could free up);
live sessions are never evicted for newcomers. A closed session's id is remembered for a while, so a late
request learns why it is gone (410) instead of a bare 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

from .errors import QuotaExceeded
from .ids import Tombstones, new_id
from .metrics import Metrics
from .runtime import ServedModel
from .scheduler import LIVE, Lane, Outcome, Scheduler
from .settings import DEFAULT_MODEL_NAME, Settings
from .slots import SlotPool
from s2vc.transport.streams import PIXEL_FORMATS, frame_bytes

log = logging.getLogger("s2vc.server")


class StreamSpec(BaseModel):
    """What a client asks for when it opens a stream (the body of POST /v1/streams)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    mode: Literal["encode", "decode"] = Field("encode", description="encode: raw frames in, units out; decode: units in, raw frames out")
    width: int = Field(..., ge=1, le=16384)
    height: int = Field(..., ge=1, le=16384)
    fps: float = Field(25.0, gt=0, description="Frame rate written to the bitstream header (encode)")
    rate: int = Field(0, ge=0, description="Rate point (0 = fewest bits)")
    model: str = Field(DEFAULT_MODEL_NAME, description="A model name this server serves")
    pixel_format: Literal["i420", "rgb24"] = Field("i420", description=f"Raw frame layout, one of {', '.join(PIXEL_FORMATS)}")
    realtime: bool = Field(True, description="encode: drop frames the server cannot code in time (bounded inbox, stale frames); "
                                             "false: never drop, throttle the upload instead. Decode streams never drop.")


@dataclass
class StreamSession:
    id: str
    spec: StreamSpec
    served: ServedModel
    lane: Lane | None = None
    created: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    busy: bool = False  # a frames request is running
    next_seq: int = 0  # number of the next input item, over all requests of the session
    header_sent: bool = False  # encode: the file header went out in an earlier response
    closed: str | None = None  # why the session ended
    owner: str = ""  # fingerprint of the API key that opened it (for the per-key quota; never the key itself)
    sink: Callable[[Outcome], None] | None = None  # the running request's outcome queue

    @property
    def frame_bytes(self) -> int:
        return frame_bytes(self.spec.pixel_format, self.spec.width, self.spec.height)

    def deliver(self, outcome: Outcome) -> None:
        """Called by the scheduler thread; forwards to the running request (late outcomes of a gone one vanish)."""
        sink = self.sink
        if sink is not None:
            sink(outcome)

    def describe(self) -> dict[str, object]:
        frames = self.lane.state.frame_index if self.lane else 0
        return self.spec.model_dump() | {"id": self.id, "frame_bytes": self.frame_bytes, "frames": frames}


def key_fingerprint(headers: Mapping[str, str] | None) -> str:
    """A short hash of the request's bearer key ("" without one, as in dev mode)."""
    value = (headers or {}).get("authorization", "") if headers is not None else ""
    return hashlib.sha256(value.encode()).hexdigest()[:16] if value else ""


class SessionManager:
    def __init__(self, settings: Settings, scheduler: Scheduler, metrics: Metrics, slots: SlotPool) -> None:
        self.settings, self.scheduler, self.metrics = settings, scheduler, metrics
        self.slots = slots  # shared with the WebRTC calls
        self.sessions: dict[str, StreamSession] = {}
        self._gone = Tombstones("stream")

    def open(self, spec: StreamSpec, served: ServedModel, headers: Mapping[str, str] | None = None) -> StreamSession:
        self.slots.check(self.retry_after)
        owner = key_fingerprint(headers)
        quota = self.settings.sessions_per_key
        held = [s for s in self.sessions.values() if s.owner == owner]
        if len(held) >= quota:
            self.metrics.sessions_rejected.inc()
            raise QuotaExceeded(
                f"this API key holds {len(held)} stream sessions, its limit (max_sessions_per_key, S2VC_MAX_SESSIONS_PER_KEY); "
                     "close one (DELETE /v1/streams/{id}) or retry later",
                retry_after=self.retry_after(held),
            )
        session_id = new_id(headers, self.settings.router_id_header, lambda i: i in self.sessions or i in self._gone)
        session = StreamSession(session_id, spec, served, owner=owner)
        state = served.codec.new_state(spec.width, spec.height, spec.rate)
        session.lane = self.scheduler.open_lane(served, spec.mode, state, session.deliver, priority=LIVE, realtime=spec.realtime)
        self.sessions[session.id] = session
        self.slots.take(session.id)
        return session

    def get(self, session_id: str) -> StreamSession:
        session = self.sessions.get(session_id)
        if session is not None:
            return session
        raise self._gone.missing(session_id)

    def close(self, session: StreamSession, reason: str, detail: str) -> None:
        if session.closed:
            return
        session.closed = detail
        self.sessions.pop(session.id, None)
        self.slots.give_back(session.id)
        self._gone.add(session.id, detail)
        if session.lane is not None:
            self.scheduler.close_lane(session.lane, "cancelled")
        self.metrics.sessions_closed.labels(reason).inc()
        log.info("stream %s closed: %s", session.id, detail)

    def close_all(self, reason: str = "shutdown") -> None:
        for session in list(self.sessions.values()):
            self.close(session, reason, "the server is shutting down")

    def retry_after(self, sessions: list[StreamSession] | None = None) -> int:
        """Whole seconds until the soonest slot (of ``sessions``, default all) could free up (an idle session reaped,
        a long one expiring)."""
        now, s = time.monotonic(), self.settings
        held = list(self.sessions.values()) if sessions is None else sessions
        waits = [s.max_stream_s - (now - x.created) for x in held]
        waits += [s.idle_timeout_s - (now - x.last_active) for x in held if not x.busy]
        return max(1, math.ceil(min(waits, default=1)))

    def reap(self) -> None:
        now, s = time.monotonic(), self.settings
        for session in list(self.sessions.values()):
            if now - session.created > s.max_stream_s:
                self.close(session, "duration", f"reached the stream duration limit max_stream_s={s.max_stream_s:g} (S2VC_MAX_STREAM_S)")
            elif not session.busy and now - session.last_active > s.idle_timeout_s:
                self.close(session, "idle", f"idle for more than idle_timeout_s={s.idle_timeout_s:g} (S2VC_IDLE_TIMEOUT_S)")

    async def reap_forever(self) -> None:
        period = max(0.1, min(self.settings.idle_timeout_s, self.settings.max_stream_s) / 4)
        while True:
            await asyncio.sleep(min(period, 1.0))
            self.reap()
