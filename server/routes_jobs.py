"""``/v1/jobs``: upload a video (encode) or an .s2vc file (decode), poll the job, download the result."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from s2vc.bitstream import StreamReader
from s2vc.errors import S2VCError
from s2vc.pipeline import probe_file
from s2vc.video_io import VideoReader, parse_size

from .auth import require_key
from .job_runner import check_video_size
from .ids import new_id
from .jobs import JobStore, upload_suffix
from .http_errors import ERROR_RESPONSES
from .limits import limit_text
from .settings import DEFAULT_MODEL_NAME, Settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)
JobId = Path(pattern=r"^[0-9a-f]{32}$", description="The id returned by POST /v1/jobs")
MEDIA_TYPES = {".s2vc": "application/octet-stream", ".mp4": "video/mp4", ".mkv": "video/x-matroska", ".y4m": "video/x-yuv4mpeg",
               ".yuv": "application/octet-stream", ".rgb": "application/octet-stream"}


class Progress(BaseModel):
    frames: int
    total: int | None
    fraction: float | None


class Timings(BaseModel):
    created_at: float
    started_at: float | None
    finished_at: float | None
    queued_s: float
    running_s: float | None
    coding_fps: float | None


class JobInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    operation: str
    model: str
    rate: int | None
    state: Literal["queued", "running", "done", "failed"]
    progress: Progress
    bpp: float | None
    kbps: float | None
    psnr: float | None = Field(
        None, description="Encode jobs: mean RGB PSNR (dB) of the decoded pictures against the input. Decode jobs: null (no reference)."
    )
    width: int | None
    height: int | None
    fps: float | None
    timings: Timings
    attempts: int
    input: dict
    result: dict
    error: str | None


def _store(request: Request) -> JobStore:
    return request.app.state.jobs


def _row(request: Request, job_id: str):
    row = _store(request).get(job_id)
    if row is None:
        raise HTTPException(404, f"no job {job_id}")
    return row


@router.post("", status_code=202, response_model=JobInfo, summary="Submit an encode or decode job")
def submit_job(
    request: Request,
    response: Response,
    file: UploadFile = File(..., description="encode: a video (mp4, mkv, y4m, h264, raw .yuv/.rgb with size); decode: an .s2vc file"),
    operation: Literal["encode", "decode"] = Form(...),
    model: str = Form(DEFAULT_MODEL_NAME, description="A model name this server serves"),
    rate: int = Form(0, ge=0, description="encode: rate point (0 = fewest bits)"),
    format: Literal["mp4", "mkv", "y4m", "yuv", "rgb"] = Form("mp4", description="decode: the result's format"),
    size: str | None = Form(None, description="encode of a raw .yuv/.rgb upload: WIDTHxHEIGHT"),
    fps: float | None = Form(None, gt=0, description="encode: frame rate to record (default: the input's, or 25)"),
) -> dict:
    state = request.app.state
    settings: Settings = state.settings
    if model not in settings.model_specs:
        raise HTTPException(404, f"unknown model {model!r}; this server has: {', '.join(settings.model_specs)}")
    width = height = None
    try:
        if size:
            width, height = parse_size(size)
    except S2VCError as exc:
        raise HTTPException(422, str(exc)) from None
    store = _store(request)
    job_id = new_id(request.headers, settings.router_id_header, lambda i: store.get(i) is not None)
    suffix = ".s2vc" if operation == "decode" else upload_suffix(file.filename)
    path, nbytes = store.save_upload(job_id, file.file, suffix)
    state.metrics.bytes_in.labels("job").inc(nbytes)
    try:
        if nbytes == 0:
            raise HTTPException(400, "the uploaded file is empty")
        if operation == "encode":
            total = _probe_video(settings, path, (width, height) if width else None, fps)
        else:
            total = _probe_bitstream(request, path, model)
        if operation == "encode" and rate > 0 and state.runtime.ready.is_set() and rate >= state.runtime.get(model).num_rates:
            raise HTTPException(422, f"rate point {rate} is outside 0..{state.runtime.get(model).num_rates - 1} of model {model!r}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    store.insert(job_id, operation=operation, model=model, rate=rate if operation == "encode" else None,
                 output_format=format if operation == "decode" else None, width=width, height=height, fps=fps,
                 input_name=file.filename, input_suffix=suffix, input_bytes=nbytes)
    store.progress(job_id, 0, total)
    state.runner.notify()
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return store.get(job_id).public()  # type: ignore[union-attr]


def _probe_video(settings: Settings, path, size, fps) -> int:
    """A video upload must open, hold a first frame and fit the limits (400/413/422 naming the problem).
    Returns its number of frames (from the container, else by counting its packets)."""
    try:
        reader = VideoReader(path, size=size, fps=fps)
        next(reader.frames(1))
    except S2VCError as exc:
        raise HTTPException(400, f"cannot read the uploaded video: {exc}") from None
    except StopIteration:
        raise HTTPException(400, "the uploaded video has no frames") from None
    try:
        check_video_size(settings, reader.info.width, reader.info.height)
    except S2VCError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        frames = reader.count_frames()
    except S2VCError as exc:
        raise HTTPException(400, f"cannot read the uploaded video: {exc}") from None
    _check_job_length(settings, frames, float(reader.info.fps))
    return frames


def _check_job_length(settings: Settings, frames: int, fps: float) -> None:
    if frames > settings.max_job_frames:
        raise HTTPException(413, limit_text(f"a video of {frames} frames", "max_job_frames", settings.max_job_frames))
    seconds = frames / fps if fps > 0 else 0.0
    if seconds > settings.max_job_seconds:
        raise HTTPException(413, limit_text(f"a video of {seconds:.0f} s", "max_job_seconds", settings.max_job_seconds))


def _probe_bitstream(request: Request, path, model: str) -> int:
    """An .s2vc upload must be a whole file (header, intact units, END with the right count, nothing after it)
    from the named model (checked once the model is loaded), within the limits. Returns its number of frames."""
    runtime = request.app.state.runtime
    try:
        with open(path, "rb") as f:
            params = StreamReader(f).params
        check_video_size(request.app.state.settings, params.width, params.height)
        if runtime.ready.is_set():
            runtime.get(model).codec.check_sequence(params)
        with open(path, "rb") as f:
            _, frames = probe_file(f)
    except S2VCError as exc:
        raise HTTPException(400, f"not a usable .s2vc file: {type(exc).__name__}: {exc}") from None
    if frames == 0:
        raise HTTPException(400, "not a usable .s2vc file: it holds no frames")
    _check_job_length(request.app.state.settings, frames, params.fps)
    return frames


@router.get("/{job_id}", response_model=JobInfo, summary="State, progress, bpp, kbps and timings of a job")
def get_job(request: Request, job_id: str = JobId) -> dict:
    return _row(request, job_id).public()


@router.get("/{job_id}/result", summary="Download the result (.s2vc for encode, the video for decode)",
            responses={200: {"content": {t: {} for t in set(MEDIA_TYPES.values())}}})
def get_result(request: Request, job_id: str = JobId) -> FileResponse:
    row = _row(request, job_id)
    if row.state != "done":
        raise HTTPException(409, f"job {job_id} is {row.state}" + (f": {row.error}" if row.error else "; poll GET /v1/jobs/{id} until done"))
    path = _store(request).result_path(row)
    if not path.is_file():
        raise HTTPException(410, f"the result of job {job_id} is no longer stored")
    request.app.state.metrics.bytes_out.labels("job").inc(path.stat().st_size)
    return FileResponse(path, media_type=MEDIA_TYPES.get(row.result_suffix or "", "application/octet-stream"),
                        filename=f"{job_id}{row.result_suffix}")


@router.delete("/{job_id}", status_code=204, summary="Cancel a job and delete its files")
def delete_job(request: Request, job_id: str = JobId) -> Response:
    row = _row(request, job_id)
    if row.state == "running":
        request.app.state.runner.cancel(job_id)
    _store(request).delete(_row(request, job_id))
    return Response(status_code=204)
