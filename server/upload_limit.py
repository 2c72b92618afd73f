"""The upload size limit, enforced on the bytes as they arrive (an ASGI middleware: part of the HTTP edge)."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .limits import limit_text
from .settings import Settings


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
            await _send_error(send, HTTPException(413, limit_text(f"upload of {int(declared)} bytes", "max_upload_bytes", self.limit)))
            return
        error = HTTPException(413, limit_text(f"upload of more than {self.limit} bytes", "max_upload_bytes", self.limit))
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
