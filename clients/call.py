"""A native WebRTC peer of an s2vc server (aiortc): join a call, decode the S²VC units locally, or publish.

    peer = CallPeer("http://127.0.0.1:8000", api_key)
    await peer.join(mode="bitstream", source=FramesTrack(frames, fps=25))   # the server codes our video
    await peer.wait_frames(50)                                               # peer.frames: decoded pictures
    await peer.hang_up()

In a room, ``role="publisher"`` with ``mode="bitstream"`` sends units the peer codes itself (:meth:`publish`),
and ``role="subscriber"`` receives the publisher's units. A unit that is missing or decodes against the wrong
state makes the peer ask for an I-frame and skip units until one arrives. docs/webrtc.md has the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from s2vc.bitstream import Unit, UnitType, end_unit, pack_unit, seq_unit, unpack_unit
from s2vc.transport.calls import STATS_CHANNEL, UNITS_CHANNEL, Control, frame_checksum
from s2vc.codec import Codec
from s2vc.errors import S2VCError, StateMismatchError, UnitOrderError
from s2vc.state import StreamState

from .errors import ServerError

log = logging.getLogger("s2vc.clients")
VIDEO_CLOCK = 90_000


class FramesTrack(MediaStreamTrack):
    """A video track that plays uint8 RGB frames at ``fps`` in real time (looping when ``loop``): a camera
    stand-in for publishing a file (``FramesTrack(VideoReader(path).frames(), 25)``)."""

    kind = "video"

    def __init__(self, frames: Iterable[np.ndarray], fps: float = 25.0, *, loop: bool = True) -> None:
        super().__init__()
        self._frames = list(frames)
        if not self._frames:
            raise ValueError("FramesTrack needs at least one frame")
        self.fps, self.loop = fps, loop
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live" or (not self.loop and self.sent >= len(self._frames)):
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(self._frames[self.sent % len(self._frames)], format="rgb24")
        frame.pts, frame.time_base = int(self.sent * VIDEO_CLOCK / self.fps), Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return frame


@dataclass
class Decoded:
    frame_index: int
    picture: np.ndarray
    checksum: int
    unit_type: str


@dataclass
class CallPeer:
    """One native peer. ``codec`` decodes received units (None: units are only collected in ``units``);
    ``ice_servers`` are STUN/TURN entries as in ``S2VC_WEBRTC_ICE_SERVERS`` (none by default)."""

    base_url: str
    api_key: str | None = None
    codec: Codec | None = None
    ice_servers: Sequence[dict[str, Any]] = ()
    lose: Callable[[Unit], bool] | None = None  # tests: units for which this is true are dropped as if lost
    timeout: float = 30.0

    call_id: str | None = field(default=None, init=False)
    frames: list[Decoded] = field(default_factory=list, init=False)
    units: list[Unit] = field(default_factory=list, init=False)
    stats: list[dict[str, Any]] = field(default_factory=list, init=False)
    errors: list[str] = field(default_factory=list, init=False)
    keyframe_requests: int = field(default=0, init=False)  # sent by this peer
    keyframes_asked: int = field(default=0, init=False)  # asked of this peer (a publisher)
    decode_errors: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential")) for s in self.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.channel: RTCDataChannel | None = None
        self._inbox: asyncio.Queue[Unit | None] = asyncio.Queue()
        self._state: StreamState | None = None
        self._waiting_for_intra = False
        self._changed = asyncio.Event()
        self._decoder: asyncio.Task | None = None
        # every codec call runs on this one thread: torch's OpenMP team stays bound to it, and no thread that ran
        # torch has to exit while the call is up
        self._codec_thread = ThreadPoolExecutor(1, thread_name_prefix="s2vc-peer-codec")
        self._keyframe_wanted = False
        self.remote_tracks: list[MediaStreamTrack] = []
        self.pc.on("track", self.remote_tracks.append)

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    # ------------------------------------------------------------------ signalling
    async def join(self, *, mode: str = "bitstream", room: str | None = None, role: str = "publisher",
                   source: MediaStreamTrack | None = None, **options: Any) -> dict[str, Any]:
        """Offer, post, apply the answer, wait for the data channel. ``options``: the other fields of the offer
        (rate, target_kbps, max_width, max_height, fps, model, checksum). Raises :class:`ServerError` on 4xx/5xx."""
        self.channel = self.pc.createDataChannel(UNITS_CHANNEL if mode == "bitstream" else STATS_CHANNEL, ordered=True)
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.channel.on("message", self._on_message)
        if source is not None:
            self.pc.addTrack(source)
        elif mode == "preview":
            self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())  # aiortc gathers every candidate first
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer", "mode": mode, "room": room, "role": role, **options}
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            response = await http.post(f"{self.base_url.rstrip('/')}/v1/webrtc/offer", json=body, headers=self._headers)
        if response.status_code >= 400:
            await self.pc.close()
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ServerError(response.status_code, str(detail))
        answer = response.json()
        self.call_id = answer["id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(opened.wait(), self.timeout)
        if self.codec is not None:
            self._decoder = asyncio.ensure_future(self._decode_loop())
        return answer

    async def hang_up(self, *, delete: bool = True) -> None:
        """Say bye, DELETE the call (ignoring a call that is already gone) and close the connection."""
        with contextlib.suppress(Exception):
            self.send(Control("bye"))
        if delete and self.call_id:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                with contextlib.suppress(httpx.HTTPError):
                    await http.delete(f"{self.base_url.rstrip('/')}/v1/webrtc/{self.call_id}", headers=self._headers)
        await self.close()

    async def close(self) -> None:
        if self._decoder is not None:
            self._inbox.put_nowait(None)  # the decoder finishes the unit in hand, then stops
            await asyncio.shield(self._decoder)
        await self.pc.close()
        self._codec_thread.shutdown(wait=True)

    async def _on_codec_thread(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._codec_thread, functools.partial(fn, *args, **kwargs))

    # ------------------------------------------------------------------ messages
    def send(self, control: Control) -> None:
        assert self.channel is not None, "join first"
        self.channel.send(control.to_json())

    def _on_message(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            try:
                unit, _ = unpack_unit(data)
            except (S2VCError, ValueError) as exc:
                self.decode_errors.append(f"unreadable unit: {exc}")
                self._request_keyframe()
                return
            if self.lose is not None and unit.type in (UnitType.I, UnitType.P) and self.lose(unit):
                return
            self.units.append(unit)
            self._inbox.put_nowait(unit)
        else:
            body = json.loads(data)
            kind = body.get("type")
            if kind == "stats":
                self.stats.append(body)
            elif kind == "error":
                self.errors.append(body.get("message", ""))
            elif kind == "keyframe":
                self.keyframes_asked += 1
                self._keyframe_wanted = True
        self._changed.set()

    def _request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._waiting_for_intra = True
        self.send(Control("keyframe"))

    # ------------------------------------------------------------------ decoding
    async def _decode_loop(self) -> None:
        assert self.codec is not None
        codec = self.codec
        while (unit := await self._inbox.get()) is not None:
            if unit.type == UnitType.SEQ:
                params = unit.params()
                try:
                    codec.check_sequence(params)
                except S2VCError as exc:
                    self.decode_errors.append(str(exc))
                    continue
                self._state = codec.new_state(params.width, params.height, params.rate)
                continue
            if unit.type == UnitType.END or self._state is None:
                continue
            if self._waiting_for_intra and unit.type != UnitType.I:
                continue
            try:
                picture, self._state = await self._on_codec_thread(codec.decode_frame, self._state, unit)
            except (UnitOrderError, StateMismatchError) as exc:  # a unit is missing or we drifted: resynchronise
                self.decode_errors.append(f"{type(exc).__name__}: {exc}")
                self._request_keyframe()
                continue
            except Exception as exc:  # a corrupt unit, or a bug: this picture is lost, the call goes on
                self.decode_errors.append(f"{type(exc).__name__}: {exc}")
                self._request_keyframe()
                continue
            self._waiting_for_intra = False
            self.frames.append(Decoded(unit.frame_index, picture, frame_checksum(picture), unit.type.name))
            self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever a message arrives or a frame is decoded)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"waited {timeout:g} s; frames={len(self.frames)} units={len(self.units)} stats={len(self.stats)} "
                                   f"errors={self.errors[-3:]} decode_errors={self.decode_errors[-3:]}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    async def wait_frames(self, n: int, timeout: float = 60.0) -> None:
        await self.wait_for(lambda: len(self.frames) >= n, timeout)

    # ------------------------------------------------------------------ publishing (a native publisher in a room)
    async def publish(self, frames: Iterable[np.ndarray], *, fps: float = 25.0, rate: int = 0) -> int:
        """Code ``frames`` with ``self.codec`` and send them in real time as units; honours the room's keyframe
        requests. Returns the number of units sent (SEQ and END included)."""
        assert self.codec is not None and self.channel is not None, "publishing needs a codec and a joined call"
        codec, sent, state, params = self.codec, 0, None, None
        start = time.monotonic()
        for i, frame in enumerate(frames):
            height, width = frame.shape[:2]
            if state is None:
                params = codec.sequence_params(width, height, fps, rate)
                state = codec.new_state(width, height, rate)
                self.channel.send(pack_unit(seq_unit(params, 0)))
                sent += 1
            intra, self._keyframe_wanted = self._keyframe_wanted, False
            unit, state, _ = await self._on_codec_thread(codec.encode_frame, state, frame, rate, force_intra=intra, reconstruct=False)
            self.channel.send(pack_unit(unit))
            sent += 1
            await asyncio.sleep(max(0.0, start + (i + 1) / fps - time.monotonic()))
        if state is not None:
            self.channel.send(pack_unit(end_unit(state.frame_index, rate)))
            sent += 1
        return sent
