"""The HTTP edge of the errors: domain errors (:mod:`server.errors`) and codec errors to status codes and bodies,
in one place, and the answers the OpenAPI schema documents for every ``/v1`` route."""

from __future__ import annotations

from typing import Any, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic import Field as PydField

from s2vc.errors import S2VCError

from .errors import BadInput, Conflict, Gone, InvalidRequest, NotFound, QuotaExceeded, Refusal, Unavailable

#: The status code of each kind of refusal.
STATUS: dict[type[Refusal], int] = {
    BadInput: 400, NotFound: 404, Conflict: 409, Gone: 410, InvalidRequest: 422, QuotaExceeded: 429, Unavailable: 503,
}
CODEC_ERROR_STATUS = 400  # a codec error that reaches a route: the input (a bitstream, a video) was unusable


def status_of(error: Refusal) -> int:
    """The status code of ``error`` (that of its nearest kind in :data:`STATUS`)."""
    return next(STATUS[kind] for kind in type(error).__mro__ if kind in STATUS)


def install(app: FastAPI) -> None:
    """Answer domain and codec errors raised anywhere under ``app``'s routes."""

    @app.exception_handler(Refusal)
    async def refusal(request: Request, exc: Refusal) -> JSONResponse:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": exc.message}, status_code=status_of(exc), headers=headers)

    @app.exception_handler(S2VCError)
    async def codec_error(request: Request, exc: S2VCError) -> JSONResponse:
        return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=CODEC_ERROR_STATUS)


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
    404: _error("No such job, stream, call or model"),
    409: _error("The request clashes with the current state: a job not done yet, a stream already receiving, a room that has a publisher"),
    410: _error("The stream or call has ended (the message says why), or a job's result is no longer stored"),
    413: _error("Over a limit: upload size, frames or duration of a job (the message names the setting)"),
    422: _error("Invalid parameters: a field out of range, a frame size or rate over a limit, a rate point the model lacks"),
    429: _error("This API key holds its share of the session slots (max_sessions_per_key)", retry_after=True),
    503: _error("All session slots are taken, or the engines are still loading", retry_after=True),
}
