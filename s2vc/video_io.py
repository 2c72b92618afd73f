"""Reading and writing frames: containers and elementary streams through PyAV, raw YUV, PNG folders.

Every reader yields uint8 RGB arrays of shape (height, width, 3); every writer takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .errors import InputError

PNG_SUFFIXES = (".png",)
RAW_SUFFIXES = (".yuv", ".rgb")
#: sizes suggested when a raw file's byte count does not fit the given --size
COMMON_SIZES = (
    (176, 144), (320, 240), (352, 240), (352, 288), (416, 240), (640, 360), (640, 480), (704, 576), (720, 480),
    (720, 576), (832, 480), (960, 540), (1024, 768), (1280, 720), (1920, 1080), (2560, 1440), (3840, 2160),
)


def av_reason(exc: BaseException) -> str:
    """What FFmpeg said, without Python's ``[Errno 1094995529]`` prefix or the repeated file name."""
    text = getattr(exc, "strerror", None) or str(exc)
    if text.startswith("[Errno"):
        text = text.split("]", 1)[-1].strip()
    return text.rstrip(".").replace("Invalid data found when processing input", "not a video FFmpeg can read (invalid data)")


def _raw_frame_bytes(w: int, h: int, fmt: str) -> int:
    return w * h * 3 if fmt == "rgb24" else w * h * 3 // 2


def i420_to_rgb(data: bytes | memoryview, width: int, height: int) -> np.ndarray:
    """One planar I420 frame (Y, then U and V at 4:2:0; even sizes) → uint8 RGB (height, width, 3), by FFmpeg's
    conversion. The one I420 → RGB path: raw ``.yuv`` files and stream frames alike."""
    buf = np.frombuffer(data, np.uint8).reshape(height * 3 // 2, width)
    return av.VideoFrame.from_ndarray(buf, format="yuv420p").to_ndarray(format="rgb24")


def rgb_to_i420(frame: np.ndarray) -> bytes:
    """uint8 RGB (height, width, 3), even sizes → one planar I420 frame, by FFmpeg's conversion (the inverse path
    of :func:`i420_to_rgb`)."""
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format="yuv420p").to_ndarray().tobytes()


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int | None  # None when the container does not say


def parse_size(text: str) -> tuple[int, int]:
    """'352x288' → (352, 288)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"size {text!r} must look like WIDTHxHEIGHT, e.g. 352x288") from None
    if w <= 0 or h <= 0:
        raise InputError(f"size {text!r} must be positive")
    return w, h


class VideoReader:
    """Frames of a video file (mp4, mkv, h264, y4m, …), a raw I420/RGB24 file, or a folder of PNGs."""

    def __init__(self, path: str | Path, *, size: tuple[int, int] | None = None, fps: float | None = None, pix_fmt: str = "yuv420p") -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"input {self.path} does not exist")
        self._size, self._fps, self._pix_fmt = size, fps, pix_fmt
        if self.path.is_dir():
            self._pngs = sorted(p for p in self.path.iterdir() if p.suffix.lower() in PNG_SUFFIXES)
            if not self._pngs:
                raise InputError(f"folder {self.path} holds no .png frames")
            first = self._read_png(self._pngs[0])
            self.info = VideoInfo(first.shape[1], first.shape[0], Fraction(fps or 25).limit_denominator(1001), len(self._pngs))
        elif self.path.suffix.lower() in RAW_SUFFIXES:
            if size is None:
                raise InputError(f"raw input {self.path.name} needs its size (--size WIDTHxHEIGHT)")
            w, h = size
            self._raw_fmt = "rgb24" if self.path.suffix.lower() == ".rgb" else pix_fmt
            self._frame_bytes = w * h * 3 if self._raw_fmt == "rgb24" else w * h * 3 // 2
            if self._raw_fmt == "yuv420p" and (w % 2 or h % 2):
                raise InputError(f"raw I420 needs an even width and height, got {w}x{h}")
            total = self.path.stat().st_size
            n = total // self._frame_bytes
            if n == 0 or total % self._frame_bytes:
                fits = [
                    f"{cw}x{ch} ({total // _raw_frame_bytes(cw, ch, self._raw_fmt)} frames)"
                    for cw, ch in COMMON_SIZES
                    if total % _raw_frame_bytes(cw, ch, self._raw_fmt) == 0 and total >= _raw_frame_bytes(cw, ch, self._raw_fmt)
                ]
                raise InputError(
                    f"{self.path} holds {total:,} bytes, which is not a whole number of {w}x{h} {self._raw_fmt} frames "
                    f"({self._frame_bytes:,} bytes each): the --size is wrong. "
                    + (f"Sizes that fit: {', '.join(fits)}." if fits else "No common frame size fits it either.")
                )
            self.info = VideoInfo(w, h, Fraction(fps or 25).limit_denominator(1001), n)
        else:
            try:
                with av.open(str(self.path)) as container:
                    if not container.streams.video:
                        raise InputError(f"{self.path} has no video stream")
                    stream = container.streams.video[0]
                    rate = stream.average_rate or stream.base_rate or Fraction(25)
                    self.info = VideoInfo(
                        stream.codec_context.width, stream.codec_context.height,
                        Fraction(fps).limit_denominator(1001) if fps else Fraction(rate), stream.frames or None,
                    )
            except av.FFmpegError as exc:
                raise InputError(f"cannot read {self.path}: {av_reason(exc)}") from exc

    def count_frames(self) -> int:
        """The number of frames, from the header when it says, else by reading the packets (no decoding)."""
        if self.info.frames:
            return self.info.frames
        try:
            with av.open(str(self.path)) as container:
                return sum(1 for packet in container.demux(video=0) if packet.size)
        except av.FFmpegError as exc:
            raise InputError(f"cannot read {self.path}: {av_reason(exc)}") from exc

    @staticmethod
    def _read_png(path: Path) -> np.ndarray:
        try:
            with av.open(str(path)) as c:
                frame = next(c.decode(video=0))
                return frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise InputError(f"cannot read image {path}: {av_reason(exc)}") from exc
        except StopIteration:
            raise InputError(f"cannot read image {path}: it holds no picture") from None

    def frames(self, limit: int | None = None) -> Iterator[np.ndarray]:
        count = 0
        for frame in self._frames():
            if limit is not None and count >= limit:
                return
            if frame.shape[:2] != (self.info.height, self.info.width):
                raise InputError(f"frame {count} of {self.path} is {frame.shape[1]}x{frame.shape[0]}, expected {self.info.width}x{self.info.height}")
            yield frame
            count += 1

    def _frames(self) -> Iterator[np.ndarray]:
        if self.path.is_dir():
            for p in self._pngs:
                yield self._read_png(p)
        elif self.path.suffix.lower() in RAW_SUFFIXES:
            w, h = self.info.width, self.info.height
            with open(self.path, "rb") as f:
                while len(data := f.read(self._frame_bytes)) == self._frame_bytes:
                    if self._raw_fmt == "rgb24":
                        yield np.frombuffer(data, np.uint8).reshape(h, w, 3).copy()
                    else:
                        yield i420_to_rgb(data, w, h)
        else:
            try:
                with av.open(str(self.path)) as container:
                    for frame in container.decode(video=0):
                        yield frame.to_ndarray(format="rgb24")
            except av.FFmpegError as exc:
                raise InputError(f"cannot decode {self.path}: {av_reason(exc)}") from exc


class VideoWriter:
    """Write frames as mp4 (H.264 via libx264, near-lossless by default), y4m, raw .yuv/.rgb or a PNG folder."""

    def __init__(self, path: str | Path, width: int, height: int, fps: Fraction | float = 25, *, crf: int = 12) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self._index = 0
        suffix = self.path.suffix.lower()
        self._container = None
        self._raw = None
        if not suffix:  # a folder of PNGs
            self.kind = "png"
            self.path.mkdir(parents=True, exist_ok=True)
        elif suffix in RAW_SUFFIXES:
            self.kind = suffix[1:]
            self._raw = open(self.path, "wb")
        elif suffix in (".mp4", ".mkv", ".y4m"):
            self.kind = suffix[1:]
            try:
                self._container = av.open(str(self.path), "w", format="yuv4mpegpipe" if suffix == ".y4m" else None)
            except av.FFmpegError as exc:
                raise InputError(f"cannot write {self.path}: {av_reason(exc)}") from exc
            rate = Fraction(fps).limit_denominator(1001)
            if suffix == ".y4m":
                self._stream = self._container.add_stream("rawvideo", rate=rate)
                self._stream.pix_fmt = "yuv420p"
            else:
                self._stream = self._container.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": "medium"})
                self._stream.pix_fmt = "yuv420p"
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
        else:
            raise InputError(f"cannot write {self.path.name}: use .mp4, .mkv, .y4m, .yuv, .rgb or a folder name for PNGs")

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3):
            raise InputError(f"frame of shape {frame.shape} given to a {self.width}x{self.height} writer")
        if self.kind == "png":
            with av.open(str(self.path / f"{self._index:05d}.png"), "w") as c:
                s = c.add_stream("png")
                s.width, s.height, s.pix_fmt = self.width, self.height, "rgb24"
                for packet in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    c.mux(packet)
                for packet in s.encode():
                    c.mux(packet)
        elif self._raw is not None:
            if self.kind == "rgb":
                self._raw.write(np.ascontiguousarray(frame).tobytes())
            else:
                self._raw.write(rgb_to_i420(_even(frame)))
        else:
            vf = av.VideoFrame.from_ndarray(_even(frame), format="rgb24").reformat(format="yuv420p")
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        self._index += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad odd sizes by one edge pixel (4:2:0 needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame
