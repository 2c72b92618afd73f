"""Calls: one aiortc peer connection each, with its own StreamState (on a scheduler lane) and a slot.

A call that sends video (a browser's camera, a native peer's file) is coded by the scheduler on a realtime lane
that holds only the newest frame. The coded unit goes out as the call's mode says: the reconstruction on a video
track plus stats (``preview``), the unit on the ``s2vc`` data channel (``bitstream``), and in a room to the
subscribers. Nothing heavy runs on the event loop: pictures are scaled in the default executor, coding runs on
the scheduler thread, whose outcomes come back with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Literal

import numpy as np
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from pydantic import BaseModel, ConfigDict, Field

from s2vc.bitstream import SequenceParams, Unit, UnitType, pack_unit, seq_unit, unpack_unit
from s2vc.transport.calls import STATS_CHANNEL, UNITS_CHANNEL, Control, ControlError, frame_checksum, message, parse_control
from s2vc.errors import S2VCError
from s2vc.rate_control import RateController

from ..limits import frame_size_problem
from ..runtime import ServedModel
from ..scheduler import LIVE, Lane, Outcome, Work
from ..settings import DEFAULT_MODEL_NAME
from ..stream_io import live_text
from .media import PictureTrack, to_rgb

if TYPE_CHECKING:
    from .manager import CallManager
    from .rooms import Room

log = logging.getLogger("s2vc.server")
KEYFRAME_SPACING_S = 0.5  # requested I-frames at most this often (a burst of requests is one I-frame)
STATS_WINDOW_S = 1.0


class OfferSpec(BaseModel):
    """The body of POST /v1/webrtc/offer (docs/webrtc.md)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    sdp: str = Field(..., max_length=64 * 1024, description="The SDP offer, with its ICE candidates (no trickle ICE)")
    type: Literal["offer"] = "offer"
    mode: Literal["preview", "bitstream"] = Field(
        "preview", description="preview: video in, the S²VC reconstruction back as video plus a 'stats' data channel; "
        "bitstream: S²VC units on the 's2vc' data channel",
    )
    room: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Join this room (a call between parties)")
    role: Literal["publisher", "subscriber"] = Field("publisher", description="In a room: the one publisher, or a subscriber")
    rate: int = Field(0, ge=0, description="Starting rate point (0 = fewest bits)")
    target_kbps: float | None = Field(None, gt=0, le=1_000_000, description="Hold this bitrate by choosing the rate point per frame")
    max_width: int = Field(320, ge=16, le=16384, description="Incoming video is scaled down to fit (aspect kept)")
    max_height: int = Field(240, ge=16, le=16384)
    fps: float = Field(25.0, gt=0, description="Frame rate written to the sequence parameters")
    model: str = Field(DEFAULT_MODEL_NAME, description="A model name this server serves")
    checksum: bool = Field(False, description="bitstream: put the CRC-32 of each reconstruction in the stats (one more VAE decode per frame)")


class Call:
    """One peer connection. Created and driven by :class:`~server.webrtc.manager.CallManager` on the event loop."""

    def __init__(self, manager: CallManager, call_id: str, spec: OfferSpec, served: ServedModel, pc: RTCPeerConnection) -> None:
        self.manager, self.id, self.spec, self.served, self.pc = manager, call_id, spec, served, pc
        self.loop = asyncio.get_running_loop()
        self.created = time.monotonic()
        self.room: Room | None = None
        self.channel: RTCDataChannel | None = None
        self.out_track: PictureTrack | None = None
        self.closed: str | None = None
        self.tasks: set[asyncio.Task] = set()
        # encoding (calls that send video)
        self.lane: Lane | None = None
        self.params: SequenceParams | None = None
        self._generation = 0  # bumps with every new lane (a new size starts a new sequence)
        self._seq_sent = -1  # generation whose SEQ unit went out
        self._next_seq = 0
        self._pending: dict[int, tuple[float, bool]] = {}  # seq -> (arrival, forced I-frame)
        self.rate = spec.rate  # the fixed rate point (without rate control)
        self.last_rate: int | None = None
        self.controller = self._controller(spec.target_kbps)
        self._keyframe_wanted = False
        self._last_keyframe = -math.inf
        # a native subscriber
        self.synced = False
        self.sent_seq: bytes | None = None
        # counters
        self.frames = self.dropped = self.errors = self.bytes = 0
        self._window: deque[tuple[float, int]] = deque()

    # ------------------------------------------------------------------ what this call does
    @property
    def encodes(self) -> bool:
        """The peer sends video that the server codes (everyone but a room's subscribers and native publishers)."""
        if self.spec.room is None:
            return True
        return self.spec.role == "publisher" and self.spec.mode == "preview"

    @property
    def shows_pictures(self) -> bool:
        return self.spec.mode == "preview"

    @property
    def channel_label(self) -> str:
        return STATS_CHANNEL if self.spec.mode == "preview" else UNITS_CHANNEL

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id, "mode": self.spec.mode, "room": self.spec.room, "role": self.spec.role, "model": self.spec.model,
            "connection": self.pc.connectionState, "channel": self.channel.readyState if self.channel else None,
            "frames": self.frames, "dropped": self.dropped, "errors": self.errors, "bytes": self.bytes,
            "rate": self.rate, "last_rate": self.last_rate, "target_kbps": self.controller.target_kbps if self.controller else None,
            "size": [self.params.width, self.params.height] if self.params else [],
            "age_s": round(time.monotonic() - self.created, 3),
        }

    def _controller(self, target_kbps: float | None) -> RateController | None:
        if target_kbps is None:
            return None
        start = self.last_rate if self.last_rate is not None else self.rate  # from where the stream is now
        return RateController(self.served.num_rates, target_kbps, fps=self.spec.fps, rate=min(start, self.served.num_rates - 1))

    # ------------------------------------------------------------------ peer connection events
    def on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self.encodes:
            self._spawn(self._pump(track))
        else:  # nobody needs it, but an unread remote track queues every frame: read and discard
            self._spawn(_discard(track))

    def on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != self.channel_label or self.channel is not None:
            log.info("call %s: closing an unexpected data channel %r", self.id, channel.label)
            channel.close()
            return
        self.channel = channel
        channel.on("message", self._on_message)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------ video in → scheduler
    async def _pump(self, track: MediaStreamTrack) -> None:
        spec = self.spec
        while not self.closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            arrival = time.monotonic()
            picture = await self.loop.run_in_executor(None, to_rgb, frame, spec.max_width, spec.max_height)
            if self.closed:
                return
            try:
                self.submit(picture, arrival)
            except S2VCError as exc:
                self.send_text("error", message=str(exc))
                await self.manager.close(self, "error", str(exc))
                return

    def submit(self, picture: np.ndarray, arrival: float) -> None:
        height, width = picture.shape[:2]
        if self.lane is None or self.params is None or (self.params.width, self.params.height) != (width, height):
            self._open_lane(width, height)
        assert self.lane is not None
        intra = False
        now = time.monotonic()
        if self._keyframe_wanted and now - self._last_keyframe >= KEYFRAME_SPACING_S:
            intra, self._keyframe_wanted, self._last_keyframe = True, False, now
        rate = self.rate
        if self.controller is not None:
            self.controller.congestion(self.channel.bufferedAmount if self.channel is not None else 0)
            rate = self.controller.choose(intra or self.frames == 0)
        seq = self._next_seq
        self._next_seq += 1
        self._pending[seq] = (arrival, intra)
        self.manager.scheduler.submit(self.lane, Work(seq, picture, force_intra=intra, rate=rate))

    def _open_lane(self, width: int, height: int) -> None:
        problem = frame_size_problem(self.manager.settings, width, height)
        if problem:
            raise S2VCError(problem)
        if self.lane is not None:
            self.manager.scheduler.close_lane(self.lane, "cancelled")
        codec = self.served.codec
        self._generation += 1
        generation = self._generation
        self.params = codec.sequence_params(width, height, self.spec.fps, self.rate)
        reconstruct = self.shows_pictures or self.spec.checksum
        self.lane = self.manager.scheduler.open_lane(
            self.served, "encode", codec.new_state(width, height, self.rate), lambda o: self._deliver(generation, o),
            priority=LIVE, realtime=True, reconstruct=reconstruct, capacity=1, transport="webrtc",
        )
        if self.room is not None:
            self.room.new_sequence(self.params)
        log.info("call %s: coding %dx%d", self.id, width, height)

    def _deliver(self, generation: int, outcome: Outcome) -> None:  # the scheduler thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
            self.loop.call_soon_threadsafe(self._on_outcome, generation, outcome)

    def _on_outcome(self, generation: int, outcome: Outcome) -> None:
        arrival, forced = self._pending.pop(outcome.seq, (time.monotonic(), False))
        if self.closed:
            return
        if outcome.kind == "dropped":
            self.dropped += 1
            if forced:  # the requested I-frame never got coded: ask again
                self._keyframe_wanted, self._last_keyframe = True, -math.inf
            return
        if outcome.kind == "error":
            self.errors += 1
            self.send_text("error", message=live_text(outcome.error))
            return
        if generation != self._generation or outcome.unit is None:
            return  # a frame of a sequence that has been replaced
        unit = outcome.unit
        data = pack_unit(unit)
        if self.controller is not None:
            self.controller.update(unit.rate, unit.type == UnitType.I, 8 * len(data))
        if self.room is not None:
            self.room.relay(unit, data)
        elif self.spec.mode == "bitstream":
            if self._seq_sent != generation:  # a new sequence starts with its SEQ unit
                self._seq_sent = generation
                self.send_binary(pack_unit(seq_unit(self.params, unit.frame_index)))  # type: ignore[arg-type]
            self.send_binary(data)
        checksum = frame_checksum(outcome.frame) if outcome.frame is not None else None
        if self.shows_pictures and outcome.frame is not None and self.out_track is not None:
            self.out_track.push(outcome.frame)
        self._stats(unit, len(data), arrival, checksum)

    def show(self, picture: np.ndarray, arrival: float, unit: Unit, nbytes: int) -> None:
        """A browser subscriber: a picture the room decoded."""
        if self.closed:
            return
        if self.out_track is not None:
            self.out_track.push(picture)
        self._stats(unit, nbytes, arrival, frame_checksum(picture))

    def _stats(self, unit: Unit, nbytes: int, arrival: float, checksum: int | None) -> None:
        now = time.monotonic()
        self.frames += 1
        self.bytes += nbytes
        self._window.append((now, nbytes))
        while self._window and now - self._window[0][0] > STATS_WINDOW_S:
            self._window.popleft()
        self.last_rate = unit.rate  # what was coded; self.rate (the peer's choice) is never overwritten by frames in flight
        params = self.params or (self.room.params if self.room else None)
        pixels = params.width * params.height if params else 1
        span = max(min(STATS_WINDOW_S, now - self.created), 1e-3)
        self.send_text(
            "stats", frame=unit.frame_index, unit=unit.type.name, rate=unit.rate, bytes=nbytes,
            bpp=round(nbytes * 8 / pixels, 5), kbps=round(sum(b for _, b in self._window) * 8 / 1000 / span, 2),
            fps=round(len(self._window) / span, 2), latency_ms=round((now - arrival) * 1000, 1), dropped=self.dropped,
            target_kbps=self.controller.target_kbps if self.controller else None, rates=self.served.num_rates,
            width=params.width if params else None, height=params.height if params else None, checksum=checksum,
        )

    # ------------------------------------------------------------------ data channel in
    def _on_message(self, data: str | bytes) -> None:
        if self.closed:
            return
        if len(data) > self.manager.settings.webrtc_max_message_bytes:
            self.send_text("error", message=f"message of {len(data)} bytes exceeds webrtc_max_message_bytes={self.manager.settings.webrtc_max_message_bytes}")
            return
        if isinstance(data, bytes):
            self._on_unit(data)
            return
        try:
            control = parse_control(data)
        except ControlError as exc:
            self.send_text("error", message=str(exc))
            return
        self._on_control(control)

    def _on_control(self, control: Control) -> None:
        if control.type == "bye":
            self._spawn(self.manager.close(self, "client", "the peer said bye"))
        elif control.type == "keyframe":
            if self.encodes:
                self.request_keyframe()
            elif self.room is not None and self.spec.role == "subscriber":
                self.synced = False  # it lost a unit: units resume at the next I-frame
                self.room.request_keyframe()
        elif self.room is not None and self.spec.role == "subscriber":
            if self.room.publisher is not None:  # a subscriber's rate wishes go to the publisher
                self.room.publisher.on_forwarded(control)
        else:
            self.on_forwarded(control)

    def on_forwarded(self, control: Control) -> None:
        """A rate or target message, from this peer or a subscriber of its room."""
        if not self.encodes:  # a native publisher chooses its own rate: pass the wish on
            self.send_text(control.type, **({"kbps": control.kbps} if control.type == "target" else {"rate": control.rate}))
            return
        if control.type == "target":
            self.controller = self._controller(control.kbps)
        elif control.type == "rate":
            if control.rate is None or control.rate >= self.served.num_rates:
                self.send_text("error", message=f"rate point {control.rate} is outside 0..{self.served.num_rates - 1}")
                return
            self.rate, self.controller = control.rate, None

    def request_keyframe(self) -> None:
        if self.encodes:
            self._keyframe_wanted = True
        else:  # a native publisher codes its own frames
            self.send_text("keyframe")

    def _on_unit(self, data: bytes) -> None:
        """A native publisher's unit: checked, then relayed to its room."""
        if self.room is None or self.spec.role != "publisher" or self.spec.mode != "bitstream":
            self.send_text("error", message="this call does not send units (only a bitstream publisher in a room does)")
            return
        try:
            unit, used = unpack_unit(data)
            if used != len(data):
                raise S2VCError(f"a message must hold exactly one unit ({len(data) - used} bytes after it)")
            if unit.type == UnitType.SEQ:
                params = unit.params()
                self.served.codec.check_sequence(params)
                problem = frame_size_problem(self.manager.settings, params.width, params.height)
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
            self.errors += 1
            self.send_text("error", message=f"unit refused: {exc}")
            return
        self.room.relay(unit, data)
        if unit.type in (UnitType.I, UnitType.P):
            self._stats(unit, len(data), time.monotonic(), None)

    # ------------------------------------------------------------------ data channel out
    def send_text(self, kind: str, **fields: object) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(message(kind, **fields))

    def send_binary(self, data: bytes) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(data)
            self.manager.metrics.bytes_out.labels("webrtc").inc(len(data))

    # ------------------------------------------------------------------ end
    async def shutdown(self) -> None:
        """Release everything the call holds (the manager calls this once)."""
        if self.lane is not None:
            self.manager.scheduler.close_lane(self.lane, "cancelled")
        if self.out_track is not None:
            self.out_track.stop()
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()


async def _discard(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
