"""Rooms: one publisher's S²VC units relayed to its subscribers.

Native subscribers get the units themselves, starting at an I-frame (a SEQ unit first). Browser subscribers get
a video track: the room decodes the units once, on a decode lane of the scheduler, and pushes each picture to
every browser subscriber. A subscriber that joins, falls behind or loses a unit asks the publisher for an I-frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from s2vc.bitstream import UNIT_OVERHEAD, SequenceParams, Unit, UnitType, pack_unit, seq_unit

from ..scheduler import LIVE, InboxFullError, Lane, Outcome, Scheduler, Work
from ..runtime import ServedModel

if TYPE_CHECKING:
    from .calls import Call

log = logging.getLogger("s2vc.server")
SUBSCRIBER_BACKLOG_BYTES = 1 << 20  # a native subscriber whose channel holds more than this unsent skips to the next I-frame


class Room:
    def __init__(self, name: str, served: ServedModel, scheduler: Scheduler, loop: asyncio.AbstractEventLoop) -> None:
        self.name, self.served, self.scheduler, self.loop = name, served, scheduler, loop
        self.publisher: Call | None = None
        self.subscribers: set[Call] = set()
        self.seq: bytes | None = None  # the packed SEQ unit of the current sequence
        self.params: SequenceParams | None = None
        self.units = 0
        # the shared decoder for browser subscribers
        self._lane: Lane | None = None
        self._synced = False
        self._seq_no = 0
        self._pending: dict[int, tuple[float, Unit]] = {}  # decode seq -> (arrival, unit)

    @property
    def empty(self) -> bool:
        return self.publisher is None and not self.subscribers

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "publisher": self.publisher.id if self.publisher else None,
                "subscribers": sorted(c.id for c in self.subscribers), "units": self.units}

    # ------------------------------------------------------------------ membership
    def join(self, call: Call) -> None:
        if call.spec.role == "publisher":
            self.publisher = call
        else:
            self.subscribers.add(call)
            self.request_keyframe()

    def leave(self, call: Call) -> None:
        if call is self.publisher:
            self.publisher = None
            self.seq = self.params = None
            self._close_decoder()
            for sub in self.subscribers:
                sub.send_text("error", message="the publisher left the room; waiting for a new one")
        self.subscribers.discard(call)
        if not self.viewers:
            self._close_decoder()

    @property
    def viewers(self) -> list[Call]:
        """Subscribers that get pictures (browsers) rather than units."""
        return [c for c in self.subscribers if c.spec.mode == "preview"]

    def request_keyframe(self) -> None:
        if self.publisher is not None:
            self.publisher.request_keyframe()

    # ------------------------------------------------------------------ relay
    def new_sequence(self, params: SequenceParams) -> None:
        self.params = params
        self.seq = pack_unit(seq_unit(params, 0))
        self._close_decoder()

    def relay(self, unit: Unit, data: bytes) -> None:
        """A publisher's I/P (or END) unit, already checked, goes to every subscriber."""
        self.units += 1
        for sub in list(self.subscribers):
            if sub.spec.mode == "bitstream":
                self._to_native(sub, unit, data)
        if self.viewers and unit.type in (UnitType.I, UnitType.P):
            self._decode(unit)

    def _to_native(self, sub: Call, unit: Unit, data: bytes) -> None:
        if sub.channel is None or sub.channel.readyState != "open" or self.seq is None:
            return
        if sub.channel.bufferedAmount > SUBSCRIBER_BACKLOG_BYTES:
            if sub.synced:
                log.info("room %s: subscriber %s is behind by %d bytes; it skips to the next I-frame", self.name, sub.id, sub.channel.bufferedAmount)
                sub.synced = False
                self.request_keyframe()
            return
        if not sub.synced:
            if unit.type != UnitType.I:
                return
            sub.synced = True
        if sub.sent_seq != self.seq:
            sub.send_binary(self.seq)
            sub.sent_seq = self.seq
        sub.send_binary(data)

    # ------------------------------------------------------------------ the decoder of browser subscribers
    def _decode(self, unit: Unit) -> None:
        if not self._synced:
            if unit.type != UnitType.I:
                return
            self._synced = True
        if self._lane is None:
            assert self.params is not None
            state = self.served.codec.new_state(self.params.width, self.params.height, self.params.rate)
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
        for viewer in self.viewers:
            viewer.show(outcome.frame, arrival, unit, UNIT_OVERHEAD + len(unit.payload))

    def _resync(self) -> None:
        self._synced = False
        if self._lane is not None:
            self.scheduler.drop_waiting(self._lane, "cancelled")
        self.request_keyframe()

    def _close_decoder(self) -> None:
        if self._lane is not None:
            self.scheduler.close_lane(self._lane, "cancelled")
            self._lane = None
        self._synced = False

