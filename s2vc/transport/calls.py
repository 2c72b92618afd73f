"""What travels on the data channels of a WebRTC call (docs/webrtc.md), shared by the server and the clients.

Binary messages (channel ``s2vc`` only) are packed S²VC units, one per message. Text messages are JSON objects
with a ``type``: control from a peer (``keyframe``, ``target``, ``rate``, ``bye``), and ``stats``/``error`` from
the server. Pure Python + numpy (the ICE settings are in :mod:`s2vc.transport.ice`).
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

STATS_CHANNEL = "stats"  # preview calls: stats out, control in
UNITS_CHANNEL = "s2vc"  # bitstream calls: units both ways (binary), control and stats (text)
MODES = ("preview", "bitstream")
ROLES = ("publisher", "subscriber")
MAX_CONTROL_BYTES = 4096
MAX_TARGET_KBPS = 1_000_000.0


class ControlError(ValueError):
    """A text message that is not a valid control message."""


@dataclass(frozen=True)
class Control:
    """A peer's control message. ``kbps`` (target; None = rate control off) and ``rate`` only where they apply."""

    type: str  # keyframe | target | rate | bye
    kbps: float | None = None
    rate: int | None = None

    def to_json(self) -> str:
        body: dict[str, Any] = {"type": self.type}
        if self.type == "target":
            body["kbps"] = self.kbps
        elif self.type == "rate":
            body["rate"] = self.rate
        return json.dumps(body)


def parse_control(text: str) -> Control:
    """Validate a peer's text message; raise :class:`ControlError` saying what is wrong."""
    if len(text) > MAX_CONTROL_BYTES:
        raise ControlError(f"control message of {len(text)} characters exceeds {MAX_CONTROL_BYTES}")
    try:
        body = json.loads(text)
    except ValueError:
        raise ControlError("a control message must be a JSON object") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise ControlError('a control message must be a JSON object with a string "type"')
    kind = body["type"]
    if kind in ("keyframe", "bye"):
        return Control(kind)
    if kind == "target":
        kbps = body.get("kbps")
        if kbps is None:
            return Control("target", None)
        if isinstance(kbps, bool) or not isinstance(kbps, (int, float)) or not math.isfinite(kbps) or not 0 < kbps <= MAX_TARGET_KBPS:
            raise ControlError(f'"target" needs "kbps" in (0, {MAX_TARGET_KBPS:g}] or null, got {kbps!r}')
        return Control("target", float(kbps))
    if kind == "rate":
        rate = body.get("rate")
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            raise ControlError(f'"rate" needs a non-negative integer "rate", got {rate!r}')
        return Control("rate", rate=rate)
    raise ControlError(f"unknown control message type {kind!r} (keyframe, target, rate, bye)")


def frame_checksum(frame: np.ndarray) -> int:
    """CRC-32 of a picture's RGB bytes: the encoder's reconstruction and a decoder's output match iff equal."""
    return zlib.crc32(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())


def message(kind: str, **fields: Any) -> str:
    """A server → peer text message (``stats``, ``error``, ``keyframe``)."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))
