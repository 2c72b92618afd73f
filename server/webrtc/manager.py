"""The calls of a server: signalling (offer → answer), slots, rooms, and hanging up on every path (DELETE, bye,
a failed or closed connection, a connection that never comes up, the duration limit, shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from aiortc import RTCPeerConnection, RTCSessionDescription

from s2vc.transport.ice import refuse_checks_from_elsewhere, restrict_host_addresses

from ..errors import BadInput, Conflict, InvalidRequest, Refusal
from ..ids import Tombstones, new_id
from ..metrics import Metrics
from ..limits import check_fps
from ..runtime import Runtime
from ..scheduler import Scheduler
from ..settings import Settings
from ..slots import SlotPool
from .calls import Call
from .network import filter_candidates, rtc_configuration
from .offer import OfferSpec
from .rooms import Room

log = logging.getLogger("s2vc.server")


class CallManager:
    def __init__(self, settings: Settings, runtime: Runtime, scheduler: Scheduler, metrics: Metrics, slots: SlotPool) -> None:
        self.settings, self.runtime, self.scheduler, self.metrics = settings, runtime, scheduler, metrics
        self.slots = slots  # shared with the /v1/streams sessions
        self.configuration = rtc_configuration(settings.webrtc_ice_servers)
        restrict_host_addresses(settings.webrtc_hosts)
        refuse_checks_from_elsewhere(settings.webrtc_hosts)
        if settings.webrtc_hosts:
            log.info("WebRTC host candidates restricted to %s", ", ".join(settings.webrtc_hosts))
        self.calls: dict[str, Call] = {}
        self.rooms: dict[str, Room] = {}
        self._gone = Tombstones("call")

    # ------------------------------------------------------------------ signalling
    async def answer(self, spec: OfferSpec, headers: Mapping[str, str] | None = None) -> tuple[Call, RTCSessionDescription]:
        s = self.settings
        served = self.runtime.for_request(spec.model, spec.rate)
        check_fps(s, spec.fps)
        if spec.room is None and spec.role == "subscriber":
            raise InvalidRequest("role 'subscriber' needs a room")
        room = self.rooms.get(spec.room) if spec.room else None
        if room is not None and spec.role == "publisher" and room.publisher is not None:
            raise Conflict(f"room {spec.room!r} already has a publisher")
        if room is not None and room.served.name != served.name:
            raise Conflict(f"room {spec.room!r} uses model {room.served.name!r}")
        self.slots.check(lambda: 5)
        sdp = filter_candidates(spec.sdp, s.webrtc_hosts)
        call_id = new_id(headers, s.router_id_header, lambda i: i in self.calls or i in self._gone)
        pc = RTCPeerConnection(self.configuration)
        call = Call(call_id, spec, served, pc, scheduler=self.scheduler, settings=s, metrics=self.metrics, hang_up=self.close)
        self.calls[call_id] = call
        self.slots.take(call_id)
        self.metrics.calls.labels(spec.mode).inc()

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(call, "failed" if pc.connectionState == "failed" else "client", f"peer connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if pc.sctp is None:
                raise InvalidRequest(f"the offer has no data channel: create the {call.channel_label!r} channel before the offer")
            if call.shows_pictures:
                if not any(t.kind == "video" for t in pc.getTransceivers()):
                    raise InvalidRequest("a preview call's offer needs a video m-line (send a camera, or a recvonly video transceiver)")
                call.peer.add_picture_track()
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Refusal:
            await self.close(call, "error", "the offer was refused")
            raise
        except Exception as exc:  # a malformed SDP: aiortc raises ValueError and friends
            await self.close(call, "error", f"bad offer: {exc}")
            raise BadInput(f"the SDP offer could not be used: {type(exc).__name__}: {exc}") from None
        if spec.room:
            room = self.rooms.get(spec.room) or self.rooms.setdefault(spec.room, Room(spec.room, served, self.scheduler, asyncio.get_running_loop()))
            call.join(room)
        call.peer.spawn(self._connect_deadline(call))
        log.info("call %s: %s %s%s", call_id, spec.mode, spec.role, f" in room {spec.room}" if spec.room else "")
        return call, pc.localDescription

    async def _connect_deadline(self, call: Call) -> None:
        await asyncio.sleep(self.settings.webrtc_connect_timeout_s)
        if call.pc.connectionState != "connected":
            await self.close(call, "failed", f"the peer connection did not come up within webrtc_connect_timeout_s={self.settings.webrtc_connect_timeout_s:g}")

    # ------------------------------------------------------------------ lookup and hang-up
    def get(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is not None:
            return call
        raise self._gone.missing(call_id)

    async def close(self, call: Call, reason: str, detail: str) -> None:
        if call.closed:
            return
        call.end(detail)
        self.calls.pop(call.id, None)
        self.slots.give_back(call.id)
        self._gone.add(call.id, detail)
        if call.room is not None:
            call.room.leave(call.role)
            if call.room.empty:
                self.rooms.pop(call.room.name, None)
        self.metrics.calls.labels(call.spec.mode).dec()
        self.metrics.sessions_closed.labels(reason).inc()
        log.info("call %s ended: %s", call.id, detail)
        await call.shutdown()

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(c, "shutdown", "the server is shutting down") for c in list(self.calls.values())))

    async def reap_forever(self) -> None:
        """Ends calls that reached ``max_stream_s``."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for call in list(self.calls.values()):
                if now - call.created > self.settings.max_stream_s:
                    with contextlib.suppress(Exception):
                        await self.close(call, "duration", f"reached the duration limit max_stream_s={self.settings.max_stream_s:g} (S2VC_MAX_STREAM_S)")
