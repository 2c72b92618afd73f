"""Worker threads that run queued jobs. Their frames go through the scheduler like a stream's (at a lower
priority than live streams), so the scheduler stays the only thread that touches the device.

An encode job writes exactly what ``s2vc encode`` writes for the same input and settings; a decode job writes
what ``s2vc decode`` writes (same header checks, same writer).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Iterable, Iterator

from s2vc.bitstream import StreamReader, StreamWriter, UnitType
from s2vc.errors import CorruptStreamError, InputError, S2VCError
from s2vc.pipeline import Summary, probe_file, psnr
from s2vc.video_io import VideoReader, VideoWriter

from .jobs import RESULT_FORMATS, JobRow, JobStore
from .limits import frame_size_problem, limit_text
from .metrics import Metrics
from .runtime import Runtime, ServedModel
from .scheduler import BACKGROUND, Outcome, Scheduler, Work
from .settings import Settings

log = logging.getLogger("s2vc.server")
PROGRESS_EVERY_S = 0.5
EXPIRE_EVERY_S = 60.0


class JobInterrupted(Exception):
    """The job stopped without a verdict (server shutdown: it stays 'running' and is re-run at the next start)."""


class JobCancelled(Exception):
    """DELETE /v1/jobs/{id} arrived while the job was running."""


def check_video_size(settings: Settings, width: int, height: int) -> None:
    problem = frame_size_problem(settings, width, height)
    if problem:
        raise InputError(problem)


def at_most(items: Iterable, limit: int) -> Iterator:
    """``items``, failing with a message naming the limit when there are more than ``limit``."""
    for count, item in enumerate(items):
        if count >= limit:
            raise InputError(limit_text(f"a job of more than {limit} frames", "max_job_frames", limit))
        yield item


class JobRunner:
    def __init__(self, store: JobStore, scheduler: Scheduler, runtime: Runtime, settings: Settings, metrics: Metrics) -> None:
        self.store, self.scheduler, self.runtime, self.settings, self.metrics = store, scheduler, runtime, settings, metrics
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._active: dict[str, threading.Event] = {}  # job id → set when its worker let go of it
        self._cancel: set[str] = set()
        self._threads = [threading.Thread(target=self._worker, name=f"s2vc-jobs-{i}", daemon=True) for i in range(settings.job_workers)]
        self._last_expire = 0.0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def notify(self) -> None:
        """A job was queued."""
        self._wake.set()

    def cancel(self, job_id: str, timeout: float = 30.0) -> None:
        """Stop a running job and wait until its worker has let go of its files."""
        with self._lock:
            done = self._active.get(job_id)
            if done is None:
                return
            self._cancel.add(job_id)
        done.wait(timeout)

    # ------------------------------------------------------------------ workers
    def _worker(self) -> None:
        while not self._stopping and not self.runtime.ready.wait(0.5):
            pass
        while not self._stopping:
            if time.monotonic() - self._last_expire > EXPIRE_EVERY_S:
                self._last_expire = time.monotonic()
                self.store.expire(self.settings.job_retention_s)
            with self._lock:
                row = self.store.claim_next()
                if row is not None:
                    self._active[row.id] = threading.Event()
            if row is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self._run(row)
            finally:
                with self._lock:
                    self._cancel.discard(row.id)
                    self._active.pop(row.id).set()

    def _run(self, row: JobRow) -> None:
        log.info("job %s: %s (attempt %d)", row.id, row.operation, row.attempts)
        try:
            served = self.runtime.get(row.model)
            summary, tmp, suffix = self._encode(row, served) if row.operation == "encode" else self._decode(row, served)
            self.store.finish(row, tmp, suffix, summary)
            self.metrics.jobs.labels(row.operation, "done").inc()
            log.info("job %s done: %d frames", row.id, summary["frames"])
        except (JobInterrupted, JobCancelled) as exc:
            log.info("job %s stopped: %s", row.id, type(exc).__name__)
        except (S2VCError, OSError) as exc:
            self.store.fail(row.id, f"{type(exc).__name__}: {exc}")
            self.metrics.jobs.labels(row.operation, "failed").inc()
        except Exception as exc:
            log.exception("job %s failed", row.id)
            self.store.fail(row.id, f"internal error ({type(exc).__name__}); the job did not finish")
            self.metrics.jobs.labels(row.operation, "failed").inc()
        finally:
            for leftover in self.store.tmp.glob(row.id + ".*"):
                leftover.unlink(missing_ok=True)

    def _encode(self, row: JobRow, served: ServedModel) -> tuple[dict, object, str]:
        size = (row.width, row.height) if row.width and row.height else None
        reader = VideoReader(self.store.upload_path(row), size=size, fps=row.fps)
        info = reader.info
        check_video_size(self.settings, info.width, info.height)
        rate = row.rate or 0
        codec = served.codec
        params = codec.sequence_params(info.width, info.height, info.fps, rate)
        limit = self.settings.max_job_frames
        total = min(reader.count_frames(), limit)
        summary = Summary(width=info.width, height=info.height, fps=params.fps_num / params.fps_den)
        tmp = self.store.temp_path(row.id, ".s2vc")
        start = time.perf_counter()
        sources: dict[int, object] = {}  # source frames by sequence number until their reconstruction is back

        def remembered(frames):
            for seq, frame in enumerate(frames):
                sources[seq] = frame
                yield frame

        with open(tmp, "wb") as f:
            writer = StreamWriter(f, params)
            frames = remembered(at_most(reader.frames(), limit))
            state = codec.new_state(info.width, info.height, rate)
            for outcome in self._code(row, served, "encode", state, frames, total, reconstruct=True):
                summary.frame_bytes.append(writer.write_unit(outcome.unit))  # type: ignore[arg-type]
                summary.frame_types.append(outcome.unit.type.name)  # type: ignore[union-attr]
                source = sources.pop(outcome.seq, None)
                if source is not None and outcome.frame is not None:
                    summary.psnr.append(psnr(source, outcome.frame))  # type: ignore[arg-type]
                summary.frames += 1
            writer.close()
        if summary.frames == 0:
            raise InputError("the video has no frames")
        summary.seconds = time.perf_counter() - start
        summary.total_bytes = writer.bytes_written
        return summary.as_dict(), tmp, ".s2vc"

    def _decode(self, row: JobRow, served: ServedModel) -> tuple[dict, object, str]:
        suffix = RESULT_FORMATS[row.output_format or "mp4"]
        tmp = self.store.temp_path(row.id, suffix)
        upload = self.store.upload_path(row)
        start = time.perf_counter()
        with open(upload, "rb") as source:
            reader = StreamReader(source, require_end=True)
            params = reader.params
            check_video_size(self.settings, params.width, params.height)
            served.codec.check_sequence(params)
            with open(upload, "rb") as again:
                _, total = probe_file(again)  # a whole file: END with the right count, nothing after it
            fps = params.fps_num / params.fps_den
            summary = Summary(width=params.width, height=params.height, fps=fps, total_bytes=upload.stat().st_size)

            def units():
                for unit in reader:
                    if unit.type in (UnitType.I, UnitType.P):
                        yield unit
                if not reader.ended:  # pragma: no cover - the probe refused such files
                    raise CorruptStreamError("the file ends without its END unit")

            state = served.codec.new_state(params.width, params.height, params.rate)
            with VideoWriter(tmp, params.width, params.height, fps) as writer:
                for outcome in self._code(row, served, "decode", state, at_most(units(), self.settings.max_job_frames), total):
                    writer.write(outcome.frame)  # type: ignore[arg-type]
                    summary.frames += 1
        if summary.frames == 0:
            raise InputError("the bitstream holds no frames")
        summary.seconds = time.perf_counter() - start
        return summary.as_dict(), tmp, suffix

    def _code(
        self, row: JobRow, served: ServedModel, op, state, payloads: Iterable, total: int | None, *, reconstruct: bool = False
    ) -> Iterator[Outcome]:
        """Run ``payloads`` through a background lane, keeping its inbox full; yields the coded outcomes in order.
        ``reconstruct`` (encode): outcomes carry the decoder's picture too (for the job's PSNR)."""
        results: queue.Queue[Outcome] = queue.Queue()
        lane = self.scheduler.open_lane(
            served, op, state, results.put, priority=BACKGROUND, realtime=False, transport="job", reconstruct=reconstruct
        )
        items = iter(payloads)
        in_flight, seq, done, exhausted = 0, 0, 0, False
        last_progress = time.monotonic()
        try:
            while True:
                while not exhausted and in_flight < lane.capacity:
                    payload = next(items, None)
                    if payload is None:
                        exhausted = True
                    else:
                        self.scheduler.submit(lane, Work(seq, payload))
                        seq, in_flight = seq + 1, in_flight + 1
                if in_flight == 0:
                    self.store.progress(row.id, done, total)
                    return
                outcome = results.get()
                in_flight -= 1
                if row.id in self._cancel:
                    raise JobCancelled()
                if outcome.kind == "dropped":
                    raise JobInterrupted(outcome.reason)
                if outcome.kind == "error":
                    raise outcome.error  # type: ignore[misc]
                done += 1
                yield outcome
                if time.monotonic() - last_progress > PROGRESS_EVERY_S:
                    last_progress = time.monotonic()
                    self.store.progress(row.id, done, total)
        finally:
            self.scheduler.close_lane(lane, "cancelled")
