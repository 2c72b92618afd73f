"""Pictures in and out of a call: incoming video scaled to the call's size, and an outgoing track that always
sends the newest picture (a slow receiver skips pictures; latency never builds up)."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

VIDEO_CLOCK = 90_000  # RTP video clock rate


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest even size within ``max_width`` x ``max_height`` with the aspect of ``width`` x ``height``
    (never upscaled)."""
    scale = min(1.0, max_width / width, max_height / height)
    w, h = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
    return w, h


def to_rgb(frame: av.VideoFrame, max_width: int, max_height: int) -> np.ndarray:
    """A received picture as uint8 RGB (height, width, 3), scaled down to fit (runs off the event loop)."""
    width, height = fit_size(frame.width, frame.height, max_width, max_height)
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()


class PictureTrack(MediaStreamTrack):
    """An outgoing video track fed with :meth:`push`; ``recv`` returns the newest picture not sent yet."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._picture: np.ndarray | None = None
        self._fresh = asyncio.Event()
        self._start = time.monotonic()
        self._last_pts = -1
        self.sent = 0

    def push(self, picture: np.ndarray) -> None:
        self._picture = picture
        self._fresh.set()

    def stop(self) -> None:
        super().stop()
        self._fresh.set()  # wake a waiting recv so that it ends

    async def recv(self) -> av.VideoFrame:
        await self._fresh.wait()
        self._fresh.clear()
        if self.readyState != "live" or self._picture is None:
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(self._picture, format="rgb24")
        pts = max(int((time.monotonic() - self._start) * VIDEO_CLOCK), self._last_pts + 1)
        frame.pts, frame.time_base = pts, Fraction(1, VIDEO_CLOCK)
        self._last_pts = pts
        self.sent += 1
        return frame
