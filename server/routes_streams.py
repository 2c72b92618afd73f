"""``/v1/streams``: live sessions that keep their StreamState between requests."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import ConfigDict, Field

from s2vc.bitstream import HEADER_SIZE, MAGIC, unpack_header
from s2vc.errors import S2VCError

from .auth import require_key
from .http_errors import ERROR_RESPONSES
from .limits import check_fps, check_frame_size
from .sessions import StreamSession, StreamSpec
from .stream_io import FramesPump, FramesResponse, check_params_fit
from s2vc.transport.streams import MEDIA_TYPE, WireError, frame_bytes

router = APIRouter(prefix="/v1/streams", tags=["streams"], dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)
StreamId = Path(pattern=r"^[0-9a-f]{32}$", description="The id returned by POST /v1/streams")


class StreamInfo(StreamSpec):
    """A stream session: its spec, id and progress."""

    model_config = ConfigDict(extra="ignore")

    id: str
    frame_bytes: int = Field(description="Bytes of one raw frame in pixel_format")
    frames: int = Field(description="Frames coded so far")


FRAMES_BODY = {
    "requestBody": {
        "required": True,
        "description": "encode: raw frames back to back (pixel_format); decode: bitstream units, optionally preceded by the "
                       "64-byte .s2vc file header. Send it chunked to stream.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "responses": {"200": {"description": "Messages (kind u8, length u32, body) as each frame is coded; see s2vc/transport/streams.py",
                          "content": {MEDIA_TYPE: {}}}},
}


def _session(request: Request, stream_id: str) -> StreamSession:
    return request.app.state.sessions.get(stream_id)


@router.post("", status_code=201, response_model=StreamInfo, summary="Open a stream session")
def open_stream(spec: StreamSpec, request: Request) -> dict:
    state = request.app.state
    settings = state.settings
    served = state.runtime.for_request(spec.model, spec.rate)
    check_frame_size(settings, spec.width, spec.height)
    check_fps(settings, spec.fps)
    try:
        frame_bytes(spec.pixel_format, spec.width, spec.height)
    except WireError as exc:
        raise HTTPException(422, str(exc)) from None
    session = state.sessions.open(spec, served, request.headers)
    return session.describe()


@router.get("/{stream_id}", response_model=StreamInfo, summary="Describe a stream session")
def get_stream(request: Request, stream_id: str = StreamId) -> dict:
    return _session(request, stream_id).describe()


@router.delete("/{stream_id}", status_code=204, summary="Close a stream session and free its slot")
def close_stream(request: Request, stream_id: str = StreamId) -> Response:
    session = _session(request, stream_id)
    request.app.state.sessions.close(session, "client", "closed by the client")
    return Response(status_code=204)


@router.post("/{stream_id}/frames", status_code=200, summary="Stream frames (encode) or units (decode) through the session", openapi_extra=FRAMES_BODY,
             response_class=FramesResponse)
async def stream_frames(
    request: Request,
    stream_id: str = StreamId,
    end: bool = Query(False, description="This request ends the stream: an END unit follows the last frame and the session closes"),
    keyframe: bool = Query(False, description="encode: code the first frame of this request as an I-frame (a receiver lost sync)"),
) -> FramesResponse:
    state = request.app.state
    session = _session(request, stream_id)
    if session.busy:
        raise HTTPException(409, f"stream {stream_id} already has a frames request running; send one at a time")
    spec = session.spec
    declared = request.headers.get("content-length")
    if spec.mode == "encode" and declared is not None and declared.isdigit() and int(declared) % session.frame_bytes:
        raise HTTPException(400, f"body of {declared} bytes is not a whole number of {spec.width}x{spec.height} {spec.pixel_format} "
                                 f"frames ({session.frame_bytes} bytes each)")
    session.busy = True
    try:
        initial, body_done = await _read_header(request, session) if spec.mode == "decode" else (b"", False)
    except BaseException:
        session.busy = False
        raise
    pump = FramesPump(session, state.sessions, state.scheduler, state.metrics, initial=initial, body_done=body_done, end=end, keyframe=keyframe)
    return FramesResponse(pump)


async def _read_header(request: Request, session: StreamSession) -> tuple[bytes, bool]:
    """Decode streams: a body that starts with a .s2vc file header must come from this stream's model and size
    (else 4xx before any output); the header is consumed, the bytes after it are returned with 'body ended'."""
    data, more = b"", True
    while more and len(data) < HEADER_SIZE and MAGIC.startswith(data[: len(MAGIC)]):
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise HTTPException(400, "the client went away")
        data += message.get("body", b"")
        more = message.get("more_body", False)
    request.app.state.metrics.bytes_in.labels("stream").inc(len(data))
    if not data.startswith(MAGIC):
        return data, not more
    try:
        params, size = unpack_header(data)
        check_params_fit(session, params)
    except S2VCError as exc:
        raise HTTPException(400, f"{type(exc).__name__}: {exc}") from None
    return data[size:], not more
