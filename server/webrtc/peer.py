"""The transport shell of a call: one aiortc peer connection, its one data channel, its outgoing video track and
the tasks it runs. It knows nothing of coding: incoming units and control messages go to the call's callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from s2vc.transport.calls import Control, ControlError, message, parse_control

from .media import PictureTrack

log = logging.getLogger("s2vc.server")


class Peer:
    """``on_video(track)`` gets the peer's video track; ``on_unit(bytes)`` and ``on_control(Control)`` the messages of
    the data channel named ``channel_label`` (other channels are closed, oversized messages answered with an error).
    ``count_bytes(n)`` counts what goes out."""

    def __init__(self, pc: RTCPeerConnection, channel_label: str, max_message_bytes: int, *,
                 on_video: Callable[[MediaStreamTrack], None], on_unit: Callable[[bytes], None],
                 on_control: Callable[[Control], None], count_bytes: Callable[[int], None], name: str) -> None:
        self.pc, self.channel_label, self.max_message_bytes = pc, channel_label, max_message_bytes
        self._on_video, self._on_unit, self._on_control, self._count_bytes = on_video, on_unit, on_control, count_bytes
        self.name = name
        self.channel: RTCDataChannel | None = None
        self.out_track: PictureTrack | None = None
        self.closed: str | None = None  # why the call ended, once it has
        self.tasks: set[asyncio.Task] = set()
        pc.on("track", self.on_track)
        pc.on("datachannel", self.on_datachannel)

    # ------------------------------------------------------------------ peer connection events
    def on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._on_video(track)
        else:
            self.discard(track)

    def discard(self, track: MediaStreamTrack) -> None:
        """Read and drop a track nobody needs (an unread remote track queues every frame)."""
        self.spawn(_discard(track))

    def on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != self.channel_label or self.channel is not None:
            log.info("call %s: closing an unexpected data channel %r", self.name, channel.label)
            channel.close()
            return
        self.channel = channel
        channel.on("message", self._on_message)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def add_picture_track(self) -> None:
        """The outgoing video track of a call that shows pictures."""
        self.out_track = PictureTrack()
        self.pc.addTrack(self.out_track)

    def show(self, picture: np.ndarray) -> None:
        if self.out_track is not None:
            self.out_track.push(picture)

    # ------------------------------------------------------------------ data channel
    def _on_message(self, data: str | bytes) -> None:
        if self.closed:
            return
        if len(data) > self.max_message_bytes:
            self.send_text("error", message=f"message of {len(data)} bytes exceeds webrtc_max_message_bytes={self.max_message_bytes}")
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

    @property
    def open(self) -> bool:
        return self.channel is not None and self.channel.readyState == "open"

    @property
    def backlog(self) -> int:
        """Bytes queued on the data channel, not sent yet."""
        return self.channel.bufferedAmount if self.channel is not None else 0

    def send_text(self, kind: str, **fields: object) -> None:
        if self.open:
            self.channel.send(message(kind, **fields))  # type: ignore[union-attr]

    def send_binary(self, data: bytes) -> None:
        if self.open:
            self.channel.send(data)  # type: ignore[union-attr]
            self._count_bytes(len(data))

    # ------------------------------------------------------------------ end
    async def close(self) -> None:
        """Stop the track and the tasks, close the connection."""
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
