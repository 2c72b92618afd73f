"""Request limits. Every refusal names the setting that was exceeded (the upload size: :mod:`server.upload_limit`)."""

from __future__ import annotations

from .errors import InvalidRequest
from .settings import Settings


def limit_text(what: str, setting: str, value: object) -> str:
    """'``what`` exceeds ``setting``', with the env var named too, so an operator knows what to raise."""
    return f"{what} exceeds the limit {setting}={value} (S2VC_{setting.upper()})"


def frame_size_problem(settings: Settings, width: int, height: int) -> str | None:
    """Which frame size limit a ``width`` x ``height`` video breaks, or None."""
    if width > settings.max_width:
        return limit_text(f"frame width {width}", "max_width", settings.max_width)
    if height > settings.max_height:
        return limit_text(f"frame height {height}", "max_height", settings.max_height)
    if width * height > settings.max_frame_pixels:
        return limit_text(f"frame size {width}x{height} ({width * height} pixels)", "max_frame_pixels", settings.max_frame_pixels)
    return None


def check_frame_size(settings: Settings, width: int, height: int) -> None:
    problem = frame_size_problem(settings, width, height)
    if problem:
        raise InvalidRequest(problem)


def check_fps(settings: Settings, fps: float) -> None:
    if fps > settings.max_fps:
        raise InvalidRequest(limit_text(f"frame rate {fps:g}", "max_fps", f"{settings.max_fps:g}"))
