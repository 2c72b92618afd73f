"""The roles of a call: what it does with the units it codes, and with what its peer or its room asks.

===================  =====================================  ============================================
role                 the offer                              units and pictures
===================  =====================================  ============================================
:class:`Preview`     ``preview``, no room                   the reconstruction back as video, stats
:class:`Bitstream`   ``bitstream``, no room                 the units on the ``s2vc`` data channel
:class:`Publisher`   ``preview`` publisher in a room        the server codes; units relayed to the room
:class:`NativePublisher`  ``bitstream`` publisher in a room the peer codes; its units checked and relayed
:class:`Subscriber`  ``subscriber`` in a room               units (native) or decoded pictures (browser)
===================  =====================================  ============================================

The first three encode the peer's video (an :class:`~server.webrtc.encoder.EncoderSession`). A role in a room is
the room's :class:`~server.webrtc.rooms.Member`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from s2vc.bitstream import SequenceParams, Unit, UnitType, pack_unit, seq_unit, unpack_unit
from s2vc.errors import S2VCError
from s2vc.transport.calls import Control, frame_checksum

from ..limits import frame_size_problem
from ..runtime import ServedModel
from ..settings import Settings
from .encoder import Coded, EncoderSession
from .offer import OfferSpec
from .peer import Peer
from .rooms import Room
from .stats import CallStats

#: report(unit, bytes, arrival, checksum): count a frame that went out and send its stats
Report = Callable[[Unit, int, float, "int | None"], None]


class Role:
    """A call that codes its peer's video, outside a room (the base of every role)."""

    encodes = True

    def __init__(self, call_id: str, spec: OfferSpec, served: ServedModel, settings: Settings, peer: Peer, stats: CallStats,
                 report: Report) -> None:
        self.id, self.spec, self.served, self.settings = call_id, spec, served, settings
        self.peer, self.stats, self.report = peer, stats, report
        self.encoder: EncoderSession | None = None  # set by the call for the roles that encode
        self.room: Room | None = None
        self.params: SequenceParams | None = None  # a native publisher's sequence
        self.synced = False  # a native subscriber
        self.sent_seq: bytes | None = None

    # ------------------------------------------------------------------ what the encoder produced
    def on_sequence(self, params: SequenceParams) -> None:
        """A new sequence starts (a new frame size)."""

    def deliver(self, coded: Coded) -> None:
        self.send(coded)
        checksum = frame_checksum(coded.frame) if coded.frame is not None else None
        if self.spec.mode == "preview" and coded.frame is not None:
            self.peer.show(coded.frame)
        self.report(coded.unit, len(coded.data), coded.arrival, checksum)

    def send(self, coded: Coded) -> None:
        """Where a coded unit goes besides the stats."""

    # ------------------------------------------------------------------ what the peer says
    def on_unit(self, data: bytes) -> None:
        self.peer.send_text("error", message="this call does not send units (only a bitstream publisher in a room does)")

    def on_keyframe(self) -> None:
        self.request_keyframe()

    def on_wish(self, control: Control) -> None:
        """A ``target`` or ``rate`` message from this call's peer."""
        self.on_forwarded(control)

    # ------------------------------------------------------------------ what the room asks (of a publisher)
    def request_keyframe(self) -> None:
        assert self.encoder is not None
        self.encoder.request_keyframe()

    def on_forwarded(self, control: Control) -> None:
        """A rate or target message, from this peer or a subscriber of its room."""
        assert self.encoder is not None
        if control.type == "target":
            self.encoder.set_target(control.kbps)
        elif control.type == "rate":
            if control.rate is None or control.rate >= self.served.num_rates:
                self.peer.send_text("error", message=f"rate point {control.rate} is outside 0..{self.served.num_rates - 1}")
                return
            self.encoder.set_rate(control.rate)

    def show(self, picture: np.ndarray, arrival: float, unit: Unit, nbytes: int) -> None:
        """A picture the room decoded (browser subscribers only)."""


class Preview(Role):
    """The reconstruction back on the video track (:meth:`Role.deliver`), stats on the ``stats`` channel."""


class Bitstream(Role):
    def send(self, coded: Coded) -> None:
        assert self.encoder is not None and self.encoder.params is not None
        if coded.new_sequence:  # a new sequence starts with its SEQ unit
            self.peer.send_binary(pack_unit(seq_unit(self.encoder.params, coded.unit.frame_index)))
        self.peer.send_binary(coded.data)


class Publisher(Role):
    """A browser publishing in a room: the server codes its camera and relays the units."""

    def on_sequence(self, params: SequenceParams) -> None:
        if self.room is not None:
            self.room.new_sequence(params)

    def send(self, coded: Coded) -> None:
        if self.room is not None:
            self.room.relay(coded.unit, coded.data)


class NativePublisher(Role):
    """A native peer publishing in a room: it codes its own video and sends the units, which are checked and relayed;
    keyframe and rate wishes are passed on to it."""

    encodes = False

    def on_unit(self, data: bytes) -> None:
        if self.room is None:
            super().on_unit(data)
            return
        try:
            unit, used = unpack_unit(data)
            if used != len(data):
                raise S2VCError(f"a message must hold exactly one unit ({len(data) - used} bytes after it)")
            if unit.type == UnitType.SEQ:
                params = unit.params()
                self.served.codec.check_sequence(params)
                problem = frame_size_problem(self.settings, params.width, params.height)
                if problem:
                    raise S2VCError(problem)
                self.params = params
                self.room.new_sequence(params)
                return
            if self.params is None:
                raise S2VCError(f"a {unit.type.name} unit before any SEQ unit: send the sequence parameters first")
            if unit.rate >= self.served.num_rates:
                raise S2VCError(f"rate point {unit.rate} is outside 0..{self.served.num_rates - 1} of model {self.spec.model!r}")
        except (S2VCError, ValueError) as exc:
            self.stats.errors += 1
            self.peer.send_text("error", message=f"unit refused: {exc}")
            return
        self.room.relay(unit, data)
        if unit.type in (UnitType.I, UnitType.P):
            self.report(unit, len(data), time.monotonic(), None)

    def on_keyframe(self) -> None:
        """It codes its own frames: nothing to do here."""

    def request_keyframe(self) -> None:
        self.peer.send_text("keyframe")

    def on_forwarded(self, control: Control) -> None:
        self.peer.send_text(control.type, **({"kbps": control.kbps} if control.type == "target" else {"rate": control.rate}))


class Subscriber(Role):
    """A room's subscriber: native peers get the units (:class:`~server.webrtc.rooms.Room`), browsers the pictures
    the room decodes; keyframe and rate wishes go to the publisher."""

    encodes = False

    def on_keyframe(self) -> None:
        self.synced = False  # it lost a unit: units resume at the next I-frame
        if self.room is not None:
            self.room.request_keyframe()

    def on_wish(self, control: Control) -> None:
        if self.room is not None and self.room.publisher is not None:
            self.room.publisher.on_forwarded(control)

    def request_keyframe(self) -> None:
        self.peer.send_text("keyframe")

    def show(self, picture: np.ndarray, arrival: float, unit: Unit, nbytes: int) -> None:
        if self.peer.closed:
            return
        self.peer.show(picture)
        self.report(unit, nbytes, arrival, frame_checksum(picture))


def role_for(spec: OfferSpec) -> type[Role]:
    """The role an offer asks for."""
    if spec.room is None:
        return Preview if spec.mode == "preview" else Bitstream
    if spec.role == "subscriber":
        return Subscriber
    return Publisher if spec.mode == "preview" else NativePublisher
