"""The encoder session of a call: the video its peer sends, coded on a realtime scheduler lane.

The lane holds only the newest frame (a slow coder skips frames, latency never builds up). A new frame size starts
a new sequence: a new lane, state and :class:`~s2vc.bitstream.SequenceParams`. Keyframe requests are spaced
``KEYFRAME_SPACING_S`` apart (a burst of requests is one I-frame); the rate point is fixed or chosen per frame by
a :class:`~s2vc.rate_control.RateController`. Coding runs on the scheduler thread; its outcomes come back on the
event loop as ``on_coded``, ``on_dropped`` and ``on_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from s2vc.bitstream import SequenceParams, Unit, UnitType, pack_unit
from s2vc.errors import S2VCError
from s2vc.rate_control import RateController

from ..limits import frame_size_problem
from ..runtime import ServedModel
from ..scheduler import LIVE, Lane, Outcome, Scheduler, Work
from ..settings import Settings

log = logging.getLogger("s2vc.server")
KEYFRAME_SPACING_S = 0.5  # requested I-frames at most this often (a burst of requests is one I-frame)


@dataclass(frozen=True)
class Coded:
    """One coded frame: the unit (and its packed bytes), the decoder's picture when asked for, when the frame
    arrived, and whether it is the first unit of its sequence to come out."""

    unit: Unit
    data: bytes
    frame: np.ndarray | None
    arrival: float
    new_sequence: bool


class EncoderSession:
    def __init__(self, served: ServedModel, scheduler: Scheduler, settings: Settings, *, fps: float, rate: int,
                 target_kbps: float | None, reconstruct: bool, congestion: Callable[[], int],
                 on_sequence: Callable[[SequenceParams], None], on_coded: Callable[[Coded], None],
                 on_dropped: Callable[[], None], on_error: Callable[[Exception], None], name: str) -> None:
        self.served, self.scheduler, self.settings = served, scheduler, settings
        self.fps, self.reconstruct, self.congestion = fps, reconstruct, congestion
        self._on_sequence, self._on_coded, self._on_dropped, self._on_error = on_sequence, on_coded, on_dropped, on_error
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.lane: Lane | None = None
        self.params: SequenceParams | None = None
        self.rate = rate  # the fixed rate point (without rate control)
        self.last_rate: int | None = None  # the rate point of the last unit coded
        self.coded = 0
        self.controller = self._controller(target_kbps)
        self.closed = False
        self._generation = 0  # bumps with every new lane (a new size starts a new sequence)
        self._announced = -1  # generation whose first unit came out
        self._next_seq = 0
        self._pending: dict[int, tuple[float, bool]] = {}  # seq -> (arrival, forced I-frame)
        self._keyframe_wanted = False
        self._last_keyframe = -math.inf

    def _controller(self, target_kbps: float | None) -> RateController | None:
        if target_kbps is None:
            return None
        start = self.last_rate if self.last_rate is not None else self.rate  # from where the stream is now
        return RateController(self.served.num_rates, target_kbps, fps=self.fps, rate=min(start, self.served.num_rates - 1))

    # ------------------------------------------------------------------ what the peer asks
    def request_keyframe(self) -> None:
        self._keyframe_wanted = True

    def set_target(self, kbps: float | None) -> None:
        """Hold ``kbps`` by rate control (None: back to the fixed rate point)."""
        self.controller = self._controller(kbps)

    def set_rate(self, rate: int) -> None:
        """A fixed rate point (rate control off); the caller checked that the model has it."""
        self.rate, self.controller = rate, None

    # ------------------------------------------------------------------ frames in
    def submit(self, picture: np.ndarray, arrival: float) -> None:
        """Queue one uint8 RGB picture; raises :class:`S2VCError` for a frame size over the limits."""
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
            self.controller.congestion(self.congestion())
            rate = self.controller.choose(intra or self.coded == 0)
        seq = self._next_seq
        self._next_seq += 1
        self._pending[seq] = (arrival, intra)
        self.scheduler.submit(self.lane, Work(seq, picture, force_intra=intra, rate=rate))

    def _open_lane(self, width: int, height: int) -> None:
        problem = frame_size_problem(self.settings, width, height)
        if problem:
            raise S2VCError(problem)
        if self.lane is not None:
            self.scheduler.close_lane(self.lane, "cancelled")
        codec = self.served.codec
        self._generation += 1
        generation = self._generation
        self.params = codec.sequence_params(width, height, self.fps, self.rate)
        self.lane = self.scheduler.open_lane(
            self.served, "encode", codec.new_state(width, height, self.rate), lambda o: self._deliver(generation, o),
            priority=LIVE, realtime=True, reconstruct=self.reconstruct, capacity=1, transport="webrtc",
        )
        self._on_sequence(self.params)
        log.info("call %s: coding %dx%d", self.name, width, height)

    # ------------------------------------------------------------------ outcomes
    def _deliver(self, generation: int, outcome: Outcome) -> None:  # the scheduler thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
            self.loop.call_soon_threadsafe(self._on_outcome, generation, outcome)

    def _on_outcome(self, generation: int, outcome: Outcome) -> None:
        arrival, forced = self._pending.pop(outcome.seq, (time.monotonic(), False))
        if self.closed:
            return
        if outcome.kind == "dropped":
            if forced:  # the requested I-frame never got coded: ask again
                self._keyframe_wanted, self._last_keyframe = True, -math.inf
            self._on_dropped()
            return
        if outcome.kind == "error":
            self._on_error(outcome.error)  # type: ignore[arg-type]
            return
        if generation != self._generation or outcome.unit is None:
            return  # a frame of a sequence that has been replaced
        unit = outcome.unit
        data = pack_unit(unit)
        if self.controller is not None:
            self.controller.update(unit.rate, unit.type == UnitType.I, 8 * len(data))
        new_sequence, self._announced = self._announced != generation, generation
        self.coded += 1
        self.last_rate = unit.rate
        self._on_coded(Coded(unit, data, outcome.frame, arrival, new_sequence))

    def close(self) -> None:
        self.closed = True
        if self.lane is not None:
            self.scheduler.close_lane(self.lane, "cancelled")
