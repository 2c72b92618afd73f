"""How large a picture the codec accepts: checked in every entry point before anything is allocated.

A 4 KB file whose header declares 16384×16384 would otherwise have a decoder allocate gigabytes. The limits are
configurable per :class:`~s2vc.codec.Codec` (``limits=``), on the command line (``--max-size``, ``--max-pixels``)
and through the environment (``S2VC_MAX_WIDTH``, ``S2VC_MAX_HEIGHT``, ``S2VC_MAX_PIXELS``). No torch here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import LimitError

DEFAULT_MAX_WIDTH = 7680
DEFAULT_MAX_HEIGHT = 4320
DEFAULT_MAX_PIXELS = 3840 * 2160  # 4K UHD: the tiny model decodes it in a few GB


@dataclass(frozen=True)
class FrameLimits:
    """Largest width, height and width × height (pixels) a codec accepts."""

    max_width: int = DEFAULT_MAX_WIDTH
    max_height: int = DEFAULT_MAX_HEIGHT
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        for name in ("max_width", "max_height", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FrameLimits.{name} must be a positive int, got {value!r}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "FrameLimits":
        env = os.environ if environ is None else environ
        values = {}
        for name, var in (("max_width", "S2VC_MAX_WIDTH"), ("max_height", "S2VC_MAX_HEIGHT"), ("max_pixels", "S2VC_MAX_PIXELS")):
            if env.get(var):
                try:
                    values[name] = int(env[var])
                except ValueError:
                    raise LimitError(f"{var}={env[var]!r} is not a whole number") from None
        try:
            return cls(**values)
        except ValueError as exc:
            raise LimitError(f"frame-size limit from the environment: {exc}") from None

    def check(self, width: int, height: int, what: str = "picture") -> None:
        """Raise :class:`LimitError` when a ``width`` × ``height`` picture exceeds a limit."""
        if width > self.max_width or height > self.max_height or width * height > self.max_pixels:
            raise LimitError(
                f"{what} of {width}x{height} ({width * height:,} pixels) exceeds this decoder's limit of "
                f"{self.max_width}x{self.max_height} and {self.max_pixels:,} pixels; raise it with --max-size/--max-pixels "
                "(or S2VC_MAX_WIDTH/S2VC_MAX_HEIGHT/S2VC_MAX_PIXELS) if the stream is trusted"
            )
