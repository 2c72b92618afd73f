"""Request limits. Every refusal is a 4xx whose message names the setting that was exceeded."""

from __future__ import annotations

import json
from typing import Any, Union

from fastapi import HTTPException
from pydantic import BaseModel
from pydantic import Field as PydField
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .settings import Settings


def limit_text(what: str, setting: str, value: object) -> str:
    """'``what`` exceeds ``setting``', with the env var named too, so an operator knows what to raise."""
    return f"{what} exceeds the limit {setting}={value} (S2VC_{setting.upper()})"


def limit_error(status: int, what: str, setting: str, value: object) -> HTTPException:
    return HTTPException(status, limit_text(what, setting, value))


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
        raise HTTPException(422, problem)


def check_fps(settings: Settings, fps: float) -> None:
    if fps > settings.max_fps:
        raise limit_error(422, f"frame rate {fps:g}", "max_fps", f"{settings.max_fps:g}")


class UploadLimitMiddleware:
    """413 for a request body above ``max_upload_bytes`` on the upload routes: refused up front when
    Content-Length says so, otherwise as soon as the bytes received pass the limit (nothing more is stored)."""

    def __init__(self, app: ASGIApp, settings: Settings, paths: tuple[str, ...]) -> None:
        self.app, self.limit, self.paths = app, settings.max_upload_bytes, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_error(send, limit_error(413, f"upload of {int(declared)} bytes", "max_upload_bytes", self.limit))
            return
        error = limit_error(413, f"upload of more than {self.limit} bytes", "max_upload_bytes", self.limit)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise error  # FastAPI re-raises HTTPExceptions from body parsing: the client gets the 413
            return message

        await self.app(scope, counted, send)


async def _send_error(send: Send, error: HTTPException) -> None:
    body = json.dumps({"detail": error.detail}).encode()
    await send({"type": "http.response.start", "status": error.status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer: a message, or (request validation) FastAPI's list of problems."""

    detail: Union[str, list[dict[str, Any]]] = PydField(description="What was wrong, naming the field or the limit")


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"model": ErrorBody, "description": description}
    if retry_after:
        response["headers"] = {"Retry-After": {"description": "Seconds until a retry may succeed", "schema": {"type": "integer"}}}
    return response


#: Documented answers of the /v1 routes (the OpenAPI schema lists them, with a body schema that fits both the
#: service's own messages and FastAPI's validation errors).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed input: an unreadable video, a bitstream that is not a whole .s2vc file"),
    401: _error("No API key (send 'Authorization: Bearer <key>')"),
    403: _error("Invalid API key"),
    413: _error("Over a limit: upload size, frames or duration of a job (the message names the setting)"),
    422: _error("Invalid parameters: a field out of range, a frame size or rate over a limit, a rate point the model lacks"),
    429: _error("This API key holds its share of the session slots (max_sessions_per_key)", retry_after=True),
    503: _error("All session slots are taken, or the engines are still loading", retry_after=True),
}
