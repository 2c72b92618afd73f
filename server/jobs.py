"""REST jobs that survive restarts: a SQLite job table plus upload and result files under the data directory.

Layout (every name is made by the server: a 32-hex job id and a suffix from a fixed list)::

    DATA_DIR/jobs.sqlite3      the job table (WAL, synchronous=FULL)
    DATA_DIR/uploads/ID.EXT    the uploaded input, complete (moved in with an atomic rename after fsync)
    DATA_DIR/results/ID.EXT    the finished output, complete (idem)
    DATA_DIR/tmp/              files being written; emptied at start-up

A job row is inserted only after its upload is in place, and marked ``done`` only after its result is.
At start-up :meth:`JobStore.recover` re-queues the jobs that were running when the process died (a job is
re-run from its first frame; after ``job_max_attempts`` deaths it fails and its upload is deleted: submit it again
to retry), fails the ones whose files are gone
and deletes files no row refers to.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger("s2vc.server")

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# accepted upload suffixes (anything else is stored as .bin and probed by content); result suffixes by format
UPLOAD_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".ts", ".h264", ".264", ".h265", ".hevc", ".ivf", ".y4m", ".yuv", ".rgb", ".s2vc")
RESULT_FORMATS = {"mp4": ".mp4", "mkv": ".mkv", "y4m": ".y4m", "yuv": ".yuv", "rgb": ".rgb"}
STATES = ("queued", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    model TEXT NOT NULL,
    rate INTEGER,
    output_format TEXT,
    width INTEGER,
    height INTEGER,
    fps REAL,
    input_name TEXT,
    input_suffix TEXT NOT NULL,
    input_bytes INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    frames_done INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    result_suffix TEXT,
    result_bytes INTEGER,
    summary TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
"""


def upload_suffix(filename: str | None) -> str:
    """The stored suffix of an upload: its own if it is on the list, else ``.bin`` (the name itself is never used)."""
    suffix = os.path.splitext(filename or "")[1].lower()
    return suffix if suffix in UPLOAD_SUFFIXES else ".bin"


def fsync_replace(tmp: Path, final: Path) -> None:
    """Make ``tmp`` durable and move it to ``final`` atomically (then make the rename durable)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class JobRow:
    id: str
    operation: str
    model: str
    rate: int | None
    output_format: str | None
    width: int | None
    height: int | None
    fps: float | None
    input_name: str | None
    input_suffix: str
    input_bytes: int
    state: str
    attempts: int
    frames_done: int
    frames_total: int | None
    created: float
    started: float | None
    finished: float | None
    result_suffix: str | None
    result_bytes: int | None
    summary: str | None
    error: str | None

    def public(self) -> dict[str, Any]:
        """The JSON of GET /v1/jobs/{id}."""
        summary = json.loads(self.summary) if self.summary else {}
        end = self.finished or time.time()
        return {
            "id": self.id, "operation": self.operation, "model": self.model, "rate": self.rate, "state": self.state,
            "progress": {"frames": self.frames_done, "total": self.frames_total,
                         "fraction": (self.frames_done / self.frames_total) if self.frames_total else (1.0 if self.state == "done" else None)},
            "bpp": summary.get("bpp"), "kbps": summary.get("kbps"), "psnr": summary.get("psnr"),
            "width": summary.get("width"), "height": summary.get("height"), "fps": summary.get("fps"),
            "timings": {
                "created_at": self.created, "started_at": self.started, "finished_at": self.finished,
                "queued_s": ((self.started or end) - self.created),
                "running_s": (end - self.started) if self.started else None,
                "coding_fps": summary.get("coding_fps"),
            },
            "attempts": self.attempts, "input": {"filename": self.input_name, "bytes": self.input_bytes},
            "result": {"bytes": self.result_bytes, "format": (self.result_suffix or "").lstrip(".") or None},
            "error": self.error,
        }


class JobStore:
    """The job table and its files. Thread-safe (one connection, one lock); every method is short."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.uploads, self.results, self.tmp = self.root / "uploads", self.root / "results", self.root / "tmp"
        for folder in (self.uploads, self.results, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ paths (server-made names only)
    def upload_path(self, row: JobRow) -> Path:
        return self.uploads / (_checked_id(row.id) + row.input_suffix)

    def result_path(self, row: JobRow) -> Path:
        return self.results / (_checked_id(row.id) + (row.result_suffix or ""))

    def temp_path(self, job_id: str, suffix: str) -> Path:
        return self.tmp / (_checked_id(job_id) + suffix)

    # ------------------------------------------------------------------ rows
    def _execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def get(self, job_id: str) -> JobRow | None:
        if not JOB_ID.match(job_id):
            return None
        row = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRow(*row) if row else None

    def save_upload(self, job_id: str, source: BinaryIO, suffix: str) -> tuple[Path, int]:
        """Copy an upload into tmp/, fsync it and move it into uploads/ (no row yet). Returns (path, bytes)."""
        tmp = self.temp_path(job_id, ".upload")
        size = 0
        with open(tmp, "wb") as f:
            while chunk := source.read(1 << 20):
                f.write(chunk)
                size += len(chunk)
        final = self.uploads / (_checked_id(job_id) + suffix)
        fsync_replace(tmp, final)
        return final, size

    def insert(self, job_id: str, *, operation: str, model: str, rate: int | None, output_format: str | None, width: int | None,
               height: int | None, fps: float | None, input_name: str | None, input_suffix: str, input_bytes: int) -> None:
        self._execute(
            "INSERT INTO jobs (id, operation, model, rate, output_format, width, height, fps, input_name, input_suffix, input_bytes, state, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
            (job_id, operation, model, rate, output_format, width, height, fps, (input_name or "")[:255] or None, input_suffix, input_bytes, time.time()),
        )

    def claim_next(self) -> JobRow | None:
        """Atomically move the oldest queued job to running and return it."""
        with self._lock:
            row = self._db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created LIMIT 1").fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE jobs SET state = 'running', started = ?, attempts = attempts + 1, frames_done = 0 WHERE id = ?",
                             (time.time(), row[0]))
        return self.get(row[0])

    def progress(self, job_id: str, frames_done: int, frames_total: int | None) -> None:
        self._execute("UPDATE jobs SET frames_done = ?, frames_total = ? WHERE id = ?", (frames_done, frames_total, job_id))

    def finish(self, row: JobRow, tmp: Path, result_suffix: str, summary: dict[str, Any]) -> None:
        """Move the complete result into place, then mark the job done."""
        final = self.results / (_checked_id(row.id) + result_suffix)
        fsync_replace(tmp, final)
        frames = int(summary.get("frames", 0))
        self._execute(
            "UPDATE jobs SET state = 'done', finished = ?, result_suffix = ?, result_bytes = ?, summary = ?, frames_done = ?, frames_total = ?, "
            "error = NULL WHERE id = ?",
            (time.time(), result_suffix, final.stat().st_size, json.dumps(summary), frames, frames, row.id),
        )

    def fail(self, job_id: str, error: str) -> None:
        """Mark a job failed and delete its upload (a failed job is never re-run: submit it again to retry)."""
        self._execute("UPDATE jobs SET state = 'failed', finished = ?, error = ? WHERE id = ?", (time.time(), error[:2000], job_id))
        row = self.get(job_id)
        if row is not None:
            self.upload_path(row).unlink(missing_ok=True)

    def delete(self, row: JobRow) -> None:
        self._execute("DELETE FROM jobs WHERE id = ?", (row.id,))
        self.upload_path(row).unlink(missing_ok=True)
        if row.result_suffix:
            self.result_path(row).unlink(missing_ok=True)

    def counts(self) -> dict[str, int]:
        return dict(self._execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    # ------------------------------------------------------------------ start-up and retention
    def recover(self, max_attempts: int) -> None:
        """Bring the table and the files back to a consistent state after a restart (or a kill -9)."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        rows = [JobRow(*r) for r in self._execute("SELECT * FROM jobs").fetchall()]
        for row in rows:
            if row.state in ("queued", "running") and not self.upload_path(row).is_file():
                self.fail(row.id, "the uploaded file is missing from the data directory")
            elif row.state == "running" and row.attempts >= max_attempts:
                self.fail(
                    row.id,
                    f"the server stopped while running this job {row.attempts} times (job_max_attempts, S2VC_JOB_MAX_ATTEMPTS); "
                    "giving up. Its upload was deleted: submit the file again to retry",
                )
            elif row.state == "running":
                log.info("job %s was running when the server stopped: queued again", row.id)
                self._execute("UPDATE jobs SET state = 'queued', frames_done = 0 WHERE id = ?", (row.id,))
            elif row.state == "done" and not self.result_path(row).is_file():
                if self.upload_path(row).is_file():
                    self._execute("UPDATE jobs SET state = 'queued', frames_done = 0, result_suffix = NULL WHERE id = ?", (row.id,))
                else:
                    self.fail(row.id, "the result file is missing from the data directory")
        known = {r.id for r in rows}
        for folder in (self.uploads, self.results):
            for path in folder.iterdir():
                if path.stem not in known:
                    path.unlink(missing_ok=True)

    def expire(self, max_age_s: float) -> int:
        """Delete finished jobs older than ``max_age_s`` with their files; returns how many."""
        cutoff = time.time() - max_age_s
        rows = [JobRow(*r) for r in self._execute("SELECT * FROM jobs WHERE state IN ('done', 'failed') AND finished < ?", (cutoff,)).fetchall()]
        for row in rows:
            self.delete(row)
        return len(rows)


def _checked_id(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id
