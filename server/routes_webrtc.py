"""``/v1/webrtc``: WebRTC signalling (offer → answer), call state and hang-up. docs/webrtc.md."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from .auth import require_key
from .http_errors import ERROR_RESPONSES
from .webrtc.offer import OfferSpec

router = APIRouter(prefix="/v1/webrtc", tags=["webrtc"], dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)
CallId = Path(pattern=r"^[0-9a-f]{32}$", description="The id returned by POST /v1/webrtc/offer")


class Answer(BaseModel):
    id: str = Field(description="The call id, for GET and DELETE /v1/webrtc/{id}")
    sdp: str
    type: str = "answer"
    mode: str
    room: str | None
    role: str


@router.post("/offer", status_code=201, response_model=Answer, summary="Start a call: an SDP offer in, the answer out")
async def offer(spec: OfferSpec, request: Request) -> Answer:
    call, answer = await request.app.state.calls.answer(spec, request.headers)
    return Answer(id=call.id, sdp=answer.sdp, type=answer.type, mode=spec.mode, room=spec.room, role=spec.role)


@router.get("", summary="Open calls and rooms")
def calls(request: Request) -> dict:
    manager = request.app.state.calls
    return {"calls": [c.describe() for c in manager.calls.values()], "rooms": [r.describe() for r in manager.rooms.values()]}


@router.get("/{call_id}", summary="A call's state and counters")
def call(request: Request, call_id: str = CallId) -> dict:
    return request.app.state.calls.get(call_id).describe()


@router.delete("/{call_id}", status_code=204, summary="Hang up")
async def hang_up(request: Request, call_id: str = CallId) -> Response:
    manager = request.app.state.calls
    await manager.close(manager.get(call_id), "client", "hung up (DELETE)")
    return Response(status_code=204)
