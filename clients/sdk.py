"""A small Python SDK for the s2vc server: REST jobs and stream sessions.

    client = S2VCClient("http://127.0.0.1:8000", api_key="...")
    job = client.submit_job("clip.mp4", "encode", rate=1)
    client.wait_job(job["id"])
    client.download_result(job["id"], "clip.s2vc")

    stream = client.open_stream(width=320, height=240, fps=25)           # encode, I420 in
    reply = client.send_frames(stream["id"], frames_i420, end=True)
    open("live.s2vc", "wb").write(reply.bitstream)                          # a complete .s2vc file

Streams are sent full duplex (:mod:`clients.duplex`); everything else uses httpx.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from s2vc.transport.streams import Kind

from .duplex import post_frames
from .errors import JobFailed, ServerError


@dataclass
class StreamReply:
    """The messages of one frames request: ``data`` (units or raw frames, in order), ``errors`` and ``drops``."""

    data: list[bytes] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    drops: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bitstream(self) -> bytes:
        """Encode streams: the DATA bodies joined (header + units [+ END]); decode streams: the raw frames joined."""
        return b"".join(self.data)

    def add(self, kind: Kind, body: bytes) -> None:
        if kind == Kind.DATA:
            self.data.append(body)
        elif kind == Kind.ERROR:
            self.errors.append(json.loads(body))
        else:
            self.drops.append(json.loads(body))


class S2VCClient:
    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "S2VCClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail"))
            except ValueError:
                detail = response.text
            raise ServerError(response.status_code, detail, response.headers)
        return response

    # ------------------------------------------------------------------ health
    def ready(self) -> bool:
        return self.http.get("/v2/health/ready").status_code == 200

    def metrics_text(self) -> str:
        return self._check(self.http.get("/metrics")).text

    # ------------------------------------------------------------------ jobs
    def submit_job(self, path: str | Path, operation: str, *, model: str = "default", rate: int = 0, format: str | None = None,
                   size: str | None = None, fps: float | None = None) -> dict[str, Any]:
        """Upload ``path`` for ``operation`` (encode|decode); returns the job (``id``, ``state``, ...)."""
        path = Path(path)
        data: dict[str, Any] = {"operation": operation, "model": model, "rate": str(rate)}
        for key, value in (("format", format), ("size", size), ("fps", fps)):
            if value is not None:
                data[key] = str(value)
        with open(path, "rb") as f:
            return self._check(self.http.post("/v1/jobs", data=data, files={"file": (path.name, f)})).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/jobs/{job_id}")).json()

    def wait_job(self, job_id: str, *, timeout: float = 600.0, poll: float = 0.2) -> dict[str, Any]:
        """Poll until the job is done (returned) or failed (:class:`JobFailed`)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] == "done":
                return job
            if job["state"] == "failed":
                raise JobFailed(f"job {job_id} failed: {job['error']}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:g} s")
            time.sleep(poll)

    def download_result(self, job_id: str, dest: str | Path) -> Path:
        dest = Path(dest)
        with self.http.stream("GET", f"/v1/jobs/{job_id}/result") as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            with open(dest, "wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
        return dest

    def delete_job(self, job_id: str) -> None:
        self._check(self.http.delete(f"/v1/jobs/{job_id}"))

    # ------------------------------------------------------------------ streams
    def open_stream(self, *, mode: str = "encode", width: int, height: int, fps: float = 25.0, rate: int = 0, model: str = "default",
                    pixel_format: str = "i420", realtime: bool = True) -> dict[str, Any]:
        spec = {"mode": mode, "width": width, "height": height, "fps": fps, "rate": rate, "model": model,
                "pixel_format": pixel_format, "realtime": realtime}
        return self._check(self.http.post("/v1/streams", json=spec)).json()

    def stream(self, stream_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/streams/{stream_id}")).json()

    def close_stream(self, stream_id: str) -> None:
        self._check(self.http.delete(f"/v1/streams/{stream_id}"))

    def send_frames(self, stream_id: str, chunks: Iterable[bytes] | AsyncIterable[bytes], *, end: bool = False,
                    keyframe: bool = False) -> StreamReply:
        """Send raw frames (encode) or units (decode) in one frames request and collect every reply message."""

        async def collect() -> StreamReply:
            reply = StreamReply()
            async for kind, body in post_frames(self.base_url, stream_id, chunks, api_key=self.api_key, end=end, keyframe=keyframe,
                                                idle_timeout=self.timeout):
                reply.add(kind, body)
            return reply

        return asyncio.run(collect())
