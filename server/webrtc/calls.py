"""A call: one peer connection (:class:`~server.webrtc.peer.Peer`), the role its offer asks for
(:mod:`server.webrtc.roles`) and, when the peer's video is coded, an encoder session
(:class:`~server.webrtc.encoder.EncoderSession`) on a realtime scheduler lane.

Nothing heavy runs on the event loop: pictures are scaled in the default executor, coding runs on the scheduler
thread, whose outcomes come back with ``call_soon_threadsafe``. The manager (:mod:`server.webrtc.manager`) creates
calls, puts them in rooms and hangs them up; a call asks it to through the ``hang_up`` callback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from s2vc.bitstream import Unit
from s2vc.errors import S2VCError
from s2vc.transport.calls import STATS_CHANNEL, UNITS_CHANNEL, Control

from ..metrics import Metrics
from ..runtime import ServedModel
from ..scheduler import Scheduler
from ..settings import Settings
from ..stream_io import live_text
from .encoder import EncoderSession
from .media import to_rgb
from .offer import OfferSpec
from .peer import Peer
from .roles import Role, role_for
from .rooms import Room
from .stats import CallStats

#: hang_up(call, reason, detail): end the call (the manager's close)
HangUp = Callable[["Call", str, str], Awaitable[None]]


class Call:
    def __init__(self, call_id: str, spec: OfferSpec, served: ServedModel, pc: RTCPeerConnection, *,
                 scheduler: Scheduler, settings: Settings, metrics: Metrics, hang_up: HangUp) -> None:
        self.id, self.spec, self.served = call_id, spec, served
        self._hang_up = hang_up
        self.loop = asyncio.get_running_loop()
        self.created = time.monotonic()
        self.stats = CallStats(self.created)
        self.peer = Peer(pc, STATS_CHANNEL if spec.mode == "preview" else UNITS_CHANNEL, settings.webrtc_max_message_bytes,
                         on_video=self._on_video, on_unit=self._on_unit, on_control=self._on_control,
                         count_bytes=metrics.bytes_out.labels("webrtc").inc, name=call_id)
        self.role: Role = role_for(spec)(call_id, spec, served, settings, self.peer, self.stats, self._report)
        self.encoder: EncoderSession | None = None
        if self.role.encodes:
            self.encoder = self.role.encoder = EncoderSession(
                served, scheduler, settings, fps=spec.fps, rate=spec.rate, target_kbps=spec.target_kbps,
                reconstruct=spec.mode == "preview" or spec.checksum, congestion=lambda: self.peer.backlog,
                on_sequence=self.role.on_sequence, on_coded=self.role.deliver, on_dropped=self._on_dropped,
                on_error=self._on_error, name=call_id,
            )

    # ------------------------------------------------------------------ what the manager sees
    @property
    def pc(self) -> RTCPeerConnection:
        return self.peer.pc

    @property
    def room(self) -> Room | None:
        return self.role.room

    @property
    def closed(self) -> str | None:
        """Why the call ended, once it has."""
        return self.peer.closed

    @property
    def channel_label(self) -> str:
        return self.peer.channel_label

    @property
    def shows_pictures(self) -> bool:
        return self.spec.mode == "preview"

    @property
    def params(self):  # the current sequence: what the call codes, or what its native publisher sends
        return self.encoder.params if self.encoder is not None else self.role.params

    def join(self, room: Room) -> None:
        self.role.room = room
        room.join(self.role)

    def describe(self) -> dict[str, object]:
        encoder, params, stats = self.encoder, self.params, self.stats
        return {
            "id": self.id, "mode": self.spec.mode, "room": self.spec.room, "role": self.spec.role, "model": self.spec.model,
            "connection": self.pc.connectionState, "channel": self.peer.channel.readyState if self.peer.channel else None,
            "frames": stats.frames, "dropped": stats.dropped, "errors": stats.errors, "bytes": stats.bytes,
            "rate": encoder.rate if encoder else self.spec.rate, "last_rate": stats.last_rate, "target_kbps": self._target_kbps(),
            "size": [params.width, params.height] if params else [],
            "age_s": round(time.monotonic() - self.created, 3),
        }

    def _target_kbps(self) -> float | None:
        if self.encoder is None:
            return self.spec.target_kbps
        return self.encoder.controller.target_kbps if self.encoder.controller else None

    # ------------------------------------------------------------------ video in → encoder
    def _on_video(self, track: MediaStreamTrack) -> None:
        if self.encoder is not None:
            self.peer.spawn(self._pump(track, self.encoder))
        else:
            self.peer.discard(track)

    async def _pump(self, track: MediaStreamTrack, encoder: EncoderSession) -> None:
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
                encoder.submit(picture, arrival)
            except S2VCError as exc:
                self.peer.send_text("error", message=str(exc))
                await self._hang_up(self, "error", str(exc))
                return

    def _on_dropped(self) -> None:
        self.stats.dropped += 1

    def _on_error(self, error: Exception) -> None:
        self.stats.errors += 1
        self.peer.send_text("error", message=live_text(error))

    # ------------------------------------------------------------------ data channel in
    def _on_unit(self, data: bytes) -> None:
        self.role.on_unit(data)

    def _on_control(self, control: Control) -> None:
        if control.type == "bye":
            self.peer.spawn(self._hang_up(self, "client", "the peer said bye"))
        elif control.type == "keyframe":
            self.role.on_keyframe()
        else:
            self.role.on_wish(control)

    # ------------------------------------------------------------------ stats out
    def _report(self, unit: Unit, nbytes: int, arrival: float, checksum: int | None) -> None:
        params = self.params or (self.room.params if self.room else None)
        fields = self.stats.frame(unit, nbytes, arrival, checksum, params, self._target_kbps(), self.served.num_rates)
        self.peer.send_text("stats", **fields)

    # ------------------------------------------------------------------ end
    def end(self, detail: str) -> None:
        """Mark the call ended (the manager, before :meth:`shutdown`): nothing more goes out."""
        self.peer.closed = detail
        if self.encoder is not None:
            self.encoder.closed = True

    async def shutdown(self) -> None:
        """Release everything the call holds (the manager calls this once)."""
        if self.encoder is not None:
            self.encoder.close()
        await self.peer.close()
