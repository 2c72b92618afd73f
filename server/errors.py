"""What the server refuses, as domain errors.

Sessions, calls, the runtime, ids and limits raise these; they know nothing of HTTP. The HTTP edge
(:mod:`server.http_errors`) gives each kind its status code and answers with ``{"detail": message}`` (and a
``Retry-After`` header where waiting helps), and the OpenAPI schema documents every one of them.
"""

from __future__ import annotations


class Refusal(Exception):
    """A request the service will not carry out. ``message`` says why and what to do; ``retry_after`` (seconds) is
    set where the same request may succeed later."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadInput(Refusal):
    """Malformed input that cannot be used (an SDP offer aiortc cannot read)."""


class NotFound(Refusal):
    """No such thing: an unknown stream, call or model."""


class Conflict(Refusal):
    """The request clashes with the state of something that exists (a room that already has a publisher)."""


class Gone(Refusal):
    """The stream or call named has ended; the message says why."""


class InvalidRequest(Refusal):
    """A parameter out of range or over a limit (the message names the setting)."""


class QuotaExceeded(Refusal):
    """The caller's API key holds its share of the session slots."""


class Unavailable(Refusal):
    """Not now: every session slot is taken, or the engines are still loading."""
