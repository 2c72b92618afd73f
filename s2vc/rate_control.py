"""Rate control: keep a stream near a target bitrate by choosing the rate point of each frame.

S²VC has a few discrete rate points (one set of networks each) and every unit names its own, so a controller
can switch per frame. :class:`RateController` keeps a leaky bucket of the bits sent beyond the target and, per
rate point and frame type, a running estimate of the bits a frame costs there. For each P-frame it picks the
highest rate point whose expected cost fits the per-frame budget minus what the bucket asks to pay back within
``window_s``; between two rate points it alternates so that the mean meets the target. An I-frame costs many
P-frames: it is coded at the current rate point (lower if it would not fit ``keyframe_payback_s``) and its excess
is paid back evenly over ``keyframe_payback_s`` rather than by a sudden drop in quality. A congested transport
(a WebRTC data channel whose send buffer fills) lowers the budget further, and keyframe requests are spaced so
that a burst of requests cannot flood the link with I-frames.

    rc = RateController(num_rates=4, target_kbps=100, fps=25)
    for frame in frames:
        intra = rc.keyframe_due(requested=peer_asked)
        rate = rc.choose(intra)
        unit, state, _ = codec.encode_frame(state, frame, rate, force_intra=intra)
        rc.update(rate, intra, 8 * len(pack_unit(unit)))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# bits a frame costs at rate point r+1 relative to r: the start value, then learned from the frames
_STEP_RATIO = 1.6
_STEP_RATIO_RANGE = (1.05, 4.0)
# an I-frame costs this many P-frames, assumed until an I-frame has been seen
_INTRA_RATIO = 6.0


@dataclass
class RateController:
    """Chooses the rate point of each frame to hold ``target_kbps`` at ``fps``.

    ``window_s``: how fast the bucket of P-frame errors is paid back (seconds); ``keyframe_payback_s``: over how
    long an I-frame's excess is spread; ``smoothing``: weight of a new observation in the per-rate estimates;
    ``min_keyframe_interval``: frames between two I-frames that a peer requested; ``max_step``: how many rate
    points one frame may move (limits visible quality jumps); ``rate``: the rate point to start at.
    """

    num_rates: int
    target_kbps: float
    fps: float = 25.0
    window_s: float = 0.2
    keyframe_payback_s: float = 1.0
    smoothing: float = 0.25
    min_keyframe_interval: int = 25
    max_step: int = 1
    rate: int = 0
    bucket_bits: float = 0.0
    # (rate point, intra) -> (estimated bits, index of the frame that last updated it)
    _estimates: dict[tuple[int, bool], tuple[float, int]] = field(default_factory=dict, init=False, repr=False)
    _step_ratio: float = field(default=_STEP_RATIO, init=False, repr=False)
    _congestion_bits: float = field(default=0.0, init=False, repr=False)
    _keyframe_debt: float = field(default=0.0, init=False, repr=False)  # I-frame excess still to pay back
    _keyframe_payment: float = field(default=0.0, init=False, repr=False)  # paid per frame
    _frames_seen: int = field(default=0, init=False, repr=False)
    _last_keyframe: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_rates < 1:
            raise ValueError("num_rates must be at least 1")
        if not 0 < self.smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        if self.fps <= 0 or self.window_s <= 0 or self.keyframe_payback_s <= 0:
            raise ValueError("fps, window_s and keyframe_payback_s must be positive")
        if not 0 <= self.rate < self.num_rates:
            raise ValueError(f"start rate point {self.rate} is outside 0..{self.num_rates - 1}")
        self.set_target(self.target_kbps)

    # ---------------------------------------------------------------- inputs
    def set_target(self, kbps: float) -> None:
        """A new target bitrate (a peer's target-bitrate message); the bucket is kept."""
        if not math.isfinite(kbps) or kbps <= 0:
            raise ValueError(f"target bitrate must be a positive number of kbps, got {kbps}")
        self.target_kbps = float(kbps)

    def congestion(self, queued_bytes: int) -> None:
        """What the transport still holds unsent (e.g. a data channel's ``bufferedAmount``); paid back like the bucket."""
        self._congestion_bits = max(0, queued_bytes) * 8.0

    def keyframe_due(self, requested: bool = False) -> bool:
        """Whether the next frame should be an I-frame: the first frame, or a peer's request that is not too soon
        after the last I-frame (a request inside ``min_keyframe_interval`` waits; ask again on the next frame)."""
        if self._last_keyframe is None:
            return True
        return requested and self._frames_seen - self._last_keyframe >= self.min_keyframe_interval

    # ---------------------------------------------------------------- decisions
    @property
    def frame_budget_bits(self) -> float:
        return self.target_kbps * 1000.0 / self.fps

    def choose(self, intra: bool = False) -> int:
        """The rate point for the next frame (the current one until a frame has been coded)."""
        if not self._estimates:
            return self.rate
        if intra:  # the current rate point, unless the I-frame alone would eat half of its payback period
            budget = self.frame_budget_bits * (1 + 0.5 * self.keyframe_payback_s * self.fps)
            lo, hi = 0, self.rate
        else:
            window = max(self.window_s * self.fps, 1.0)
            paying = min(self._keyframe_payment, self._keyframe_debt)
            budget = self.frame_budget_bits - paying - (self.bucket_bits + self._congestion_bits) / window
            lo, hi = max(0, self.rate - self.max_step), min(self.num_rates - 1, self.rate + self.max_step)
        chosen = lo
        for r in range(lo, hi + 1):
            if self.expected_bits(r, intra) <= budget:
                chosen = r
        if not intra:
            self.rate = chosen
        return chosen

    def update(self, rate: int, intra: bool, bits: int) -> None:
        """Account for a coded frame: ``bits`` it took at ``rate`` (unit framing included)."""
        if not 0 <= rate < self.num_rates:
            raise ValueError(f"rate point {rate} is outside 0..{self.num_rates - 1}")
        self._learn_step_ratio(rate, intra, bits)
        old = self._estimates.get((rate, intra))
        value = float(bits) if old is None or self._is_stale(old) else old[0] + self.smoothing * (bits - old[0])
        self._estimates[(rate, intra)] = (value, self._frames_seen)
        budget = self.frame_budget_bits
        if intra:  # the excess becomes a debt paid evenly over keyframe_payback_s
            self._keyframe_debt += max(bits - budget, 0.0)
            self._keyframe_payment = self._keyframe_debt / max(self.keyframe_payback_s * self.fps, 1.0)
            self._last_keyframe = self._frames_seen
            error = min(bits - budget, 0.0)
        else:
            paying = min(self._keyframe_payment, self._keyframe_debt)
            self._keyframe_debt -= paying
            error = bits - (budget - paying)
            self.rate = rate
        floor = -2 * budget * max(self.window_s * self.fps, 1.0)  # banked savings are capped: the mean stays honest
        self.bucket_bits = max(self.bucket_bits + error, floor)
        self._frames_seen += 1

    def expected_bits(self, rate: int, intra: bool) -> float:
        """Estimated bits of a frame at ``rate``: its own recent estimate, else extrapolated with the learned ratio
        between rate points from the nearest recent one (estimates older than ``2 * keyframe_payback_s`` only
        when nothing recent exists: content changes, and a rate point left long ago may cost otherwise now)."""
        for recent_only in (True, False):
            for want_intra, factor in ((intra, 1.0), (not intra, _INTRA_RATIO if intra else 1 / _INTRA_RATIO)):
                seen = {r: v[0] for (r, i), v in self._estimates.items() if i == want_intra and not (recent_only and self._is_stale(v))}
                if seen:
                    r0 = min(seen, key=lambda r: (abs(r - rate), -r))
                    return seen[r0] * factor * self._step_ratio ** (rate - r0)
        return 0.0  # unreachable: choose() returns before asking when nothing has been seen

    def _is_stale(self, estimate: tuple[float, int]) -> bool:
        return self._frames_seen - estimate[1] > 2 * self.keyframe_payback_s * self.fps

    def _learn_step_ratio(self, rate: int, intra: bool, bits: int) -> None:
        """After a switch: the cost against the rate point just left gives one observation of the step ratio."""
        others = {r: v for (r, i), v in self._estimates.items() if i == intra and r != rate and not self._is_stale(v)}
        if not others or bits <= 0:
            return
        r0 = max(others, key=lambda r: others[r][1])  # the most recently used other rate point
        observed = (bits / max(others[r0][0], 1.0)) ** (1.0 / (rate - r0))
        observed = min(max(observed, _STEP_RATIO_RANGE[0]), _STEP_RATIO_RANGE[1])
        self._step_ratio += self.smoothing * (observed - self._step_ratio)
