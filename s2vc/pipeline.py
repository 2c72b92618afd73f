"""Whole-file encoding and decoding on top of the step API, with progress reporting and a summary."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from .bitstream import UNIT_OVERHEAD, SequenceParams, StreamReader, StreamWriter, UnitType
from .codec import Codec
from .errors import BitstreamError, CorruptStreamError, InputError, StateMismatchError
from .rate_control import RateController
from .state import StreamState

Progress = Callable[[int], None]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 RGB frames (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


@dataclass
class Summary:
    """What a coding run did: frames, sizes, speed and (when the source is known) quality."""

    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 25.0
    total_bytes: int = 0
    seconds: float = 0.0
    frame_bytes: list[int] = field(default_factory=list)
    frame_types: list[str] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)

    @property
    def bpp(self) -> float:
        return self.total_bytes * 8 / max(self.frames * self.width * self.height, 1)

    @property
    def kbps(self) -> float:
        return self.total_bytes * 8 * self.fps / max(self.frames, 1) / 1000

    @property
    def coding_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_psnr(self) -> float | None:
        finite = [p for p in self.psnr if math.isfinite(p)]
        return float(np.mean(finite)) if finite else (math.inf if self.psnr else None)

    def as_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames, "width": self.width, "height": self.height, "fps": self.fps,
            "bytes": self.total_bytes, "bpp": self.bpp, "kbps": self.kbps, "coding_fps": self.coding_fps,
            "psnr": self.mean_psnr,
        }


def encode_frames(
    codec: Codec, frames: Iterable[np.ndarray], out: BinaryIO, params: SequenceParams, *, rate: int | None = None,
    progress: Progress | None = None, reconstruct: bool = True, controller: RateController | None = None,
) -> tuple[Summary, list[np.ndarray]]:
    """Encode ``frames`` into ``out`` (header, units, END). Returns the summary and the reconstructions.

    With a ``controller`` the rate point of every frame is its choice (a target bitrate) instead of ``rate``.
    """
    rate = params.rate if rate is None else rate
    state = codec.new_state(params.width, params.height, rate)
    summary = Summary(width=params.width, height=params.height, fps=params.fps_num / params.fps_den)
    recons: list[np.ndarray] = []
    writer = StreamWriter(out, params)
    start = time.perf_counter()
    for frame in frames:
        if controller is not None:
            rate = controller.choose(codec.is_intra(state))
        unit, state, recon = codec.encode_frame(state, frame, rate, reconstruct=reconstruct)
        size = writer.write_unit(unit)
        if controller is not None:
            controller.update(unit.rate, unit.type == UnitType.I, 8 * size)
        summary.frames += 1
        summary.frame_bytes.append(size)
        summary.frame_types.append(unit.type.name)
        if recon is not None:
            recons.append(recon)
            summary.psnr.append(psnr(frame, recon))
        if progress:
            progress(1)
    summary.seconds = time.perf_counter() - start
    writer.close()
    summary.total_bytes = writer.bytes_written
    if summary.frames == 0:
        raise InputError("no frames to encode")
    return summary, recons


def decode_stream(
    codec: Codec, source: BinaryIO | bytes, *, whole_file: bool = True
) -> tuple[SequenceParams, Iterator[tuple[np.ndarray, int]]]:
    """Read the header (checking the model and the picture-size limits) and return an iterator of
    (frame, unit bytes).

    ``whole_file`` (the default): the stream is a complete file, so it must end with its END unit, whose
    frame count must match, and nothing may follow END; a file that breaks these rules raises
    :class:`~s2vc.errors.TruncatedStreamError` / :class:`~s2vc.errors.CorruptStreamError` naming the last good
    frame. ``whole_file=False`` reads a live stream: it may stop at any unit boundary.
    """
    reader = StreamReader(source, require_end=whole_file)
    params = reader.params
    codec.check_sequence(params)

    def frames() -> Iterator[tuple[np.ndarray, int]]:
        state: StreamState = codec.new_state(params.width, params.height, params.rate)
        decoded = 0
        while True:
            try:
                unit = reader.read_unit()
            except BitstreamError as exc:
                raise type(exc)(f"{exc} ({_last_good(decoded)})") from None
            if unit is None or unit.type == UnitType.END:
                if unit is not None and whole_file and unit.frame_index != state.frame_index:
                    raise CorruptStreamError(
                        f"the END unit counts {unit.frame_index} frames, the file holds {state.frame_index} ({_last_good(decoded)})"
                    )
                return
            if unit.type == UnitType.SEQ:
                continue
            try:
                frame, state = codec.decode_frame(state, unit)
            except StateMismatchError as exc:
                if exc.frame_index is None:
                    exc.frame_index = unit.frame_index
                raise
            decoded += 1
            yield frame, UNIT_OVERHEAD + len(unit.payload)

    return params, frames()


def probe_file(source: BinaryIO | bytes) -> tuple[SequenceParams, int]:
    """Check a whole ``.s2vc`` file's structure without decoding (header, every unit's CRC, END and its count,
    nothing after END): returns (params, number of frames), or raises the error :func:`decode_stream` would,
    naming the last good frame. Reads the units in 1 MiB chunks; holds one unit at a time."""
    reader = StreamReader(source, require_end=True)
    frames = 0
    while True:
        try:
            unit = reader.read_unit()
        except BitstreamError as exc:
            raise type(exc)(f"{exc} ({_last_good(frames)})") from None
        if unit is None:  # pragma: no cover - require_end raises first
            return reader.params, frames
        if unit.type == UnitType.END:
            if unit.frame_index != frames:
                raise CorruptStreamError(f"the END unit counts {unit.frame_index} frames, the file holds {frames} ({_last_good(frames)})")
            return reader.params, frames
        if unit.type in (UnitType.I, UnitType.P):
            frames += 1


def _last_good(decoded: int) -> str:
    return f"the last good frame is frame {decoded - 1}" if decoded else "no frame decoded"


def encode_file(codec: Codec, frames: Iterable[np.ndarray], out_path: Path, params: SequenceParams, **kwargs) -> tuple[Summary, list[np.ndarray]]:
    """Encode to ``out_path`` atomically (a temporary file renamed when complete)."""
    tmp = out_path.with_name(out_path.name + ".part")
    try:
        with open(tmp, "wb") as f:
            result = encode_frames(codec, frames, f, params, **kwargs)
        tmp.replace(out_path)
        return result
    finally:
        tmp.unlink(missing_ok=True)
