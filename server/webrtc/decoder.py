"""The decoder session of a room: the publisher's units decoded once, on a decode lane of the scheduler, for the
subscribers that get pictures (browsers).

Decoding starts at an I-frame. When a unit fails to decode, or the lane's inbox is full (the decoder is behind),
the session skips to the next I-frame and asks for one (``on_lost``) instead of queueing. Pictures come back on the
event loop as ``on_picture(picture, arrival, unit)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from s2vc.bitstream import SequenceParams, Unit, UnitType

from ..runtime import ServedModel
from ..scheduler import LIVE, InboxFullError, Lane, Outcome, Scheduler, Work

log = logging.getLogger("s2vc.server")


class DecoderSession:
    def __init__(self, served: ServedModel, scheduler: Scheduler, loop: asyncio.AbstractEventLoop, *,
                 on_picture: Callable[[np.ndarray, float, Unit], None], on_lost: Callable[[], None], name: str) -> None:
        self.served, self.scheduler, self.loop = served, scheduler, loop
        self._on_picture, self._on_lost, self.name = on_picture, on_lost, name
        self._lane: Lane | None = None
        self._synced = False
        self._seq_no = 0
        self._pending: dict[int, tuple[float, Unit]] = {}  # decode seq -> (arrival, unit)

    def decode(self, unit: Unit, params: SequenceParams | None) -> None:
        """Queue an I/P unit of the sequence ``params``."""
        if not self._synced:
            if unit.type != UnitType.I:
                return
            self._synced = True
        if self._lane is None:
            assert params is not None
            state = self.served.codec.new_state(params.width, params.height, params.rate)
            self._lane = self.scheduler.open_lane(self.served, "decode", state, self._deliver, priority=LIVE, realtime=False, transport="webrtc")
        seq = self._seq_no
        self._seq_no += 1
        self._pending[seq] = (time.monotonic(), unit)
        try:
            self.scheduler.submit(self._lane, Work(seq, unit))
        except InboxFullError:  # the decoder is behind: skip to the next I-frame instead of queueing
            self._pending.pop(seq, None)
            self._resync()

    def _deliver(self, outcome: Outcome) -> None:  # the scheduler thread
        try:
            self.loop.call_soon_threadsafe(self._decoded, outcome)
        except RuntimeError:  # the event loop is closed: the server is gone
            pass

    def _decoded(self, outcome: Outcome) -> None:
        pending = self._pending.pop(outcome.seq, None)
        if pending is None:
            return
        arrival, unit = pending
        if outcome.kind == "error":
            log.info("room %s: decoding failed (%s); asking for an I-frame", self.name, outcome.error)
            self._resync()
            return
        if outcome.kind != "coded" or outcome.frame is None:
            return
        self._on_picture(outcome.frame, arrival, unit)

    def _resync(self) -> None:
        self._synced = False
        if self._lane is not None:
            self.scheduler.drop_waiting(self._lane, "cancelled")
        self._on_lost()

    def close(self) -> None:
        """End the lane; the next unit must be an I-frame again."""
        if self._lane is not None:
            self.scheduler.close_lane(self._lane, "cancelled")
            self._lane = None
        self._synced = False
