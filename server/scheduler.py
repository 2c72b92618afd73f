"""The one worker thread that owns the device and batches frames of many sessions per step.

Every session (a live stream or a job) is a :class:`Lane`: a bounded inbox of work items, the session's
:class:`~s2vc.state.StreamState` (touched only by this thread) and a ``deliver`` callback through which every
submitted item gets exactly one :class:`Outcome` (coded, dropped or error), in submission order.

Each tick the worker takes the lanes with an item ready, picks the most urgent one (live streams before jobs,
then the oldest item), and batches the ready lanes with the same key (model, operation, padded frame size,
exactness), at most ``max_batch``, one item per lane (a lane's frames depend on each other). If the batch is
not full and another lane of that key may still deliver, it waits until ``batch_wait_ms`` after the urgent
item arrived. It runs ``encode_batch``/``decode_batch`` once and scatters the states and outcomes back.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

from s2vc.bitstream import UNIT_OVERHEAD, Unit
from s2vc.codec import batch_key
from s2vc.errors import S2VCError
from s2vc.state import StreamState

from .metrics import Metrics
from .runtime import Runtime, ServedModel
from .settings import Settings

log = logging.getLogger("s2vc.server")

Op = Literal["encode", "decode"]
LIVE, BACKGROUND = 0, 1  # lane priorities: live streams first, jobs with what is left


@dataclass
class Work:
    """One frame (encode: uint8 RGB array) or one I/P unit (decode) of a lane; ``seq`` numbers it for the caller."""

    seq: int
    payload: np.ndarray | Unit
    force_intra: bool = False
    rate: int | None = None  # encode: the rate point of this frame (None = the stream's current one)
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class Outcome:
    """What became of one :class:`Work`: ``unit`` (encode) or ``frame`` (decode; encode on a ``reconstruct`` lane:
    the decoder's picture), or a drop reason, or an error."""

    seq: int
    kind: Literal["coded", "dropped", "error"]
    unit: Unit | None = None
    frame: np.ndarray | None = None
    reason: str = ""
    error: Exception | None = None
    queue_s: float = 0.0
    batch: int = 0


class Lane:
    """A session as the scheduler sees it. Create with :meth:`Scheduler.open_lane`."""

    _ids = itertools.count()

    def __init__(self, served: ServedModel, op: Op, state: StreamState, deliver: Callable[[Outcome], None], *,
                 priority: int, realtime: bool, capacity: int, max_age_s: float, exact: bool, reconstruct: bool, transport: str) -> None:
        self.id = next(self._ids)
        self.served, self.op, self.state, self.deliver = served, op, state, deliver
        self.priority, self.realtime, self.capacity, self.max_age_s, self.exact = priority, realtime, capacity, max_age_s, exact
        self.reconstruct = reconstruct and op == "encode"
        self.transport = transport
        self.inbox: deque[Work] = deque()
        self.closed = False
        self.key = (served.name, op, batch_key(state), exact, self.reconstruct)  # the codec's key, per model and call

    @property
    def pixels(self) -> int:
        return self.state.width * self.state.height


class InboxFullError(RuntimeError):
    """A reliable lane got more items than its capacity (the caller must wait for outcomes first)."""


class Scheduler:
    def __init__(self, runtime: Runtime, settings: Settings, metrics: Metrics) -> None:
        self.runtime, self.settings, self.metrics = runtime, settings, metrics
        self._cond = threading.Condition()
        self._lanes: dict[int, Lane] = {}
        self._depth = 0
        self._running = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._main, name="s2vc-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            for lane in list(self._lanes.values()):
                self._close_locked(lane, "shutdown")

    # ------------------------------------------------------------------ lanes
    def open_lane(self, served: ServedModel, op: Op, state: StreamState, deliver: Callable[[Outcome], None], *,
                  priority: int = LIVE, realtime: bool = True, exact: bool = True, reconstruct: bool = False,
                  capacity: int | None = None, transport: str = "stream") -> Lane:
        """A new lane. ``reconstruct``: encode outcomes carry the decoder's picture too; ``capacity``: inbox size
        (default ``inbox_frames``; 1 keeps only the newest frame of a realtime lane)."""
        s = self.settings
        lane = Lane(served, op, state, deliver, priority=priority, realtime=realtime and op == "encode",
                    capacity=capacity or s.inbox_frames, max_age_s=s.max_frame_age_ms / 1000, exact=exact,
                    reconstruct=reconstruct, transport=transport)
        with self._cond:
            self._lanes[lane.id] = lane
        self.metrics.sessions.labels(transport, op).inc()
        return lane

    def close_lane(self, lane: Lane, reason: str = "cancelled") -> None:
        """Forget ``lane``; its waiting items are delivered as dropped with ``reason``."""
        with self._cond:
            self._close_locked(lane, reason)

    def _close_locked(self, lane: Lane, reason: str) -> None:
        if lane.closed:
            return
        lane.closed = True
        self._lanes.pop(lane.id, None)
        self._drop_all_locked(lane, reason)
        self.metrics.sessions.labels(lane.transport, lane.op).dec()

    def drop_waiting(self, lane: Lane, reason: str = "cancelled") -> None:
        """Drop every item still waiting in ``lane``'s inbox (the lane stays open)."""
        with self._cond:
            self._drop_all_locked(lane, reason)

    def _drop_all_locked(self, lane: Lane, reason: str) -> None:
        while lane.inbox:
            self._drop_locked(lane, lane.inbox.popleft(), reason)

    def _drop_locked(self, lane: Lane, work: Work, reason: str) -> None:
        self._depth -= 1
        self.metrics.queue_depth.set(self._depth)
        self.metrics.dropped.labels(reason).inc()
        lane.deliver(Outcome(work.seq, "dropped", reason=reason, queue_s=time.monotonic() - work.enqueued))

    def submit(self, lane: Lane, work: Work) -> None:
        """Queue ``work`` on ``lane``. A full realtime inbox drops its oldest item; a full reliable one raises."""
        with self._cond:
            if lane.closed:
                lane.deliver(Outcome(work.seq, "dropped", reason="cancelled"))
                return
            if len(lane.inbox) >= lane.capacity:
                if not lane.realtime:
                    raise InboxFullError(f"lane {lane.id} already holds {lane.capacity} items")
                self._drop_locked(lane, lane.inbox.popleft(), "inbox_full")
            lane.inbox.append(work)
            self._depth += 1
            self.metrics.queue_depth.set(self._depth)
            self._cond.notify_all()

    # ------------------------------------------------------------------ the worker
    def _main(self) -> None:
        self.runtime.load()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[tuple[Lane, Work]] | None:
        """Block until a batch is ready (None when stopping); pop one item from each lane of the batch."""
        wait_s = self.settings.batch_wait_ms / 1000
        with self._cond:
            while True:
                if not self._running:
                    return None
                now = time.monotonic()
                self._drop_stale_locked(now)
                ready = [lane for lane in self._lanes.values() if lane.inbox]
                if not ready:
                    self._cond.wait(0.5)
                    continue
                lead = min(ready, key=lambda lane: (lane.priority, lane.inbox[0].enqueued))
                peers = sorted((lane for lane in ready if lane.key == lead.key), key=lambda lane: (lane.priority, lane.inbox[0].enqueued))
                deadline = lead.inbox[0].enqueued + wait_s
                may_join = any(lane.key == lead.key and not lane.inbox for lane in self._lanes.values())
                if len(peers) < self.settings.max_batch and may_join and now < deadline:
                    self._cond.wait(deadline - now)
                    continue
                batch = [(lane, lane.inbox.popleft()) for lane in peers[: self.settings.max_batch]]
                self._depth -= len(batch)
                self.metrics.queue_depth.set(self._depth)
                return batch

    def _drop_stale_locked(self, now: float) -> None:
        for lane in self._lanes.values():
            while lane.realtime and lane.inbox and now - lane.inbox[0].enqueued > lane.max_age_s:
                self._drop_locked(lane, lane.inbox.popleft(), "stale")

    def _run(self, batch: list[tuple[Lane, Work]]) -> None:
        first = batch[0][0]
        codec, op, n = first.served.codec, first.op, len(batch)
        started = time.monotonic()
        for _, work in batch:
            self.metrics.stage.labels("queue").observe(started - work.enqueued)
        states = [lane.state for lane, _ in batch]
        payloads = [work.payload for _, work in batch]
        try:
            if op == "encode":
                intra = [work.force_intra for _, work in batch]
                rates = [work.rate for _, work in batch]
                results = codec.encode_batch(states, payloads, rates, force_intra=intra, reconstruct=first.reconstruct, exact=first.exact)
            else:
                results = codec.decode_batch(states, payloads, exact=first.exact)
        except Exception as exc:  # a bug or the device failing: every item of the batch gets the error, the thread goes on
            log.exception("a %s batch of %d failed", op, n)
            results = [exc] * n
        elapsed = time.monotonic() - started
        self.metrics.stage.labels("codec").observe(elapsed)
        self.metrics.batch_size.labels(op).observe(n)
        for (lane, work), result in zip(batch, results):
            lane.deliver(self._outcome(lane, work, result, started, n))  # even to a lane closed meanwhile: its caller counts

    def _outcome(self, lane: Lane, work: Work, result, started: float, n: int) -> Outcome:
        queue_s = started - work.enqueued
        if isinstance(result, Exception):
            if not isinstance(result, S2VCError):
                result = RuntimeError(f"internal error while coding ({type(result).__name__}); the frame was not coded")
            self.metrics.dropped.labels("error").inc()
            return Outcome(work.seq, "error", error=result, queue_s=queue_s, batch=n)
        if lane.op == "encode":
            unit, state, recon = result
            outcome = Outcome(work.seq, "coded", unit=unit, frame=recon, queue_s=queue_s, batch=n)
        else:
            frame, state = result
            unit = work.payload  # type: ignore[assignment]
            outcome = Outcome(work.seq, "coded", frame=frame, queue_s=queue_s, batch=n)
        lane.state = state
        self.metrics.frames.labels(lane.op, unit.type.name).inc()
        self.metrics.bpp.labels(lane.op).observe((UNIT_OVERHEAD + len(unit.payload)) * 8 / lane.pixels)
        return outcome
