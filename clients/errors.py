"""Errors the clients raise."""

from __future__ import annotations

import httpx


class ServerError(RuntimeError):
    """The server answered with a 4xx/5xx; ``status``, ``detail`` and ``headers`` say what it said."""

    def __init__(self, status: int, detail: str, headers: httpx.Headers | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.headers = status, detail, headers or httpx.Headers()


class JobFailed(RuntimeError):
    """A job ended in the failed state; the message carries the server's reason."""
