"""Rooms: one publisher's S²VC units relayed to its subscribers.

Native subscribers get the units themselves, starting at an I-frame (a SEQ unit first). Browser subscribers get
a video track: the room decodes the units once (:class:`~server.webrtc.decoder.DecoderSession`) and pushes each
picture to every browser subscriber. A subscriber that joins, falls behind or loses a unit asks the publisher for
an I-frame. A room sees its members through :class:`Member`; it never imports the calls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import numpy as np

from s2vc.bitstream import UNIT_OVERHEAD, SequenceParams, Unit, UnitType, pack_unit, seq_unit
from s2vc.transport.calls import Control

from ..runtime import ServedModel
from ..scheduler import Scheduler
from .decoder import DecoderSession
from .offer import OfferSpec
from .peer import Peer

log = logging.getLogger("s2vc.server")
SUBSCRIBER_BACKLOG_BYTES = 1 << 20  # a native subscriber whose channel holds more than this unsent skips to the next I-frame


class Member(Protocol):
    """What a room needs of a call in it (its role: :mod:`server.webrtc.roles`)."""

    id: str
    spec: OfferSpec
    peer: Peer
    synced: bool  # a native subscriber: units flow (from an I-frame on)
    sent_seq: bytes | None  # a native subscriber: the SEQ unit it has

    def request_keyframe(self) -> None: ...

    def on_forwarded(self, control: Control) -> None: ...  # a subscriber's rate wish, to the publisher

    def show(self, picture: np.ndarray, arrival: float, unit: Unit, nbytes: int) -> None: ...


class Room:
    def __init__(self, name: str, served: ServedModel, scheduler: Scheduler, loop: asyncio.AbstractEventLoop) -> None:
        self.name, self.served, self.scheduler, self.loop = name, served, scheduler, loop
        self.publisher: Member | None = None
        self.subscribers: set[Member] = set()
        self.seq: bytes | None = None  # the packed SEQ unit of the current sequence
        self.params: SequenceParams | None = None
        self.units = 0
        self.decoder = DecoderSession(served, scheduler, loop, on_picture=self._show, on_lost=self.request_keyframe, name=name)

    @property
    def empty(self) -> bool:
        return self.publisher is None and not self.subscribers

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "publisher": self.publisher.id if self.publisher else None,
                "subscribers": sorted(c.id for c in self.subscribers), "units": self.units}

    # ------------------------------------------------------------------ membership
    def join(self, call: Member) -> None:
        if call.spec.role == "publisher":
            self.publisher = call
        else:
            self.subscribers.add(call)
            self.request_keyframe()

    def leave(self, call: Member) -> None:
        if call is self.publisher:
            self.publisher = None
            self.seq = self.params = None
            self.decoder.close()
            for sub in self.subscribers:
                sub.peer.send_text("error", message="the publisher left the room; waiting for a new one")
        self.subscribers.discard(call)
        if not self.viewers:
            self.decoder.close()

    @property
    def viewers(self) -> list[Member]:
        """Subscribers that get pictures (browsers) rather than units."""
        return [c for c in self.subscribers if c.spec.mode == "preview"]

    def request_keyframe(self) -> None:
        if self.publisher is not None:
            self.publisher.request_keyframe()

    # ------------------------------------------------------------------ relay
    def new_sequence(self, params: SequenceParams) -> None:
        self.params = params
        self.seq = pack_unit(seq_unit(params, 0))
        self.decoder.close()

    def relay(self, unit: Unit, data: bytes) -> None:
        """A publisher's I/P (or END) unit, already checked, goes to every subscriber."""
        self.units += 1
        for sub in list(self.subscribers):
            if sub.spec.mode == "bitstream":
                self._to_native(sub, unit, data)
        if self.viewers and unit.type in (UnitType.I, UnitType.P):
            self.decoder.decode(unit, self.params)

    def _to_native(self, sub: Member, unit: Unit, data: bytes) -> None:
        if not sub.peer.open or self.seq is None:
            return
        if sub.peer.backlog > SUBSCRIBER_BACKLOG_BYTES:
            if sub.synced:
                log.info("room %s: subscriber %s is behind by %d bytes; it skips to the next I-frame", self.name, sub.id, sub.peer.backlog)
                sub.synced = False
                self.request_keyframe()
            return
        if not sub.synced:
            if unit.type != UnitType.I:
                return
            sub.synced = True
        if sub.sent_seq != self.seq:
            sub.peer.send_binary(self.seq)
            sub.sent_seq = self.seq
        sub.peer.send_binary(data)

    def _show(self, picture: np.ndarray, arrival: float, unit: Unit) -> None:
        for viewer in self.viewers:
            viewer.show(picture, arrival, unit, UNIT_OVERHEAD + len(unit.payload))
