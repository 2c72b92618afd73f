"""A call's counters and the ``stats`` message it sends its peer after every frame (docs/webrtc.md)."""

from __future__ import annotations

import time
from collections import deque

from s2vc.bitstream import SequenceParams, Unit

STATS_WINDOW_S = 1.0


class CallStats:
    def __init__(self, created: float) -> None:
        self.created = created
        self.frames = self.dropped = self.errors = self.bytes = 0
        self.last_rate: int | None = None  # the rate point of the last unit shown or sent
        self._window: deque[tuple[float, int]] = deque()

    def frame(self, unit: Unit, nbytes: int, arrival: float, checksum: int | None, params: SequenceParams | None,
              target_kbps: float | None, rates: int) -> dict[str, object]:
        """Count one frame that went out; the fields of its ``stats`` message (kbps and fps over the last second)."""
        now = time.monotonic()
        self.frames += 1
        self.bytes += nbytes
        self._window.append((now, nbytes))
        while self._window and now - self._window[0][0] > STATS_WINDOW_S:
            self._window.popleft()
        self.last_rate = unit.rate
        pixels = params.width * params.height if params else 1
        span = max(min(STATS_WINDOW_S, now - self.created), 1e-3)
        return dict(
            frame=unit.frame_index, unit=unit.type.name, rate=unit.rate, bytes=nbytes,
            bpp=round(nbytes * 8 / pixels, 5), kbps=round(sum(b for _, b in self._window) * 8 / 1000 / span, 2),
            fps=round(len(self._window) / span, 2), latency_ms=round((now - arrival) * 1000, 1), dropped=self.dropped,
            target_kbps=target_kbps, rates=rates, width=params.width if params else None, height=params.height if params else None,
            checksum=checksum,
        )
