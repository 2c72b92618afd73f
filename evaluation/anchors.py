"""Traditional-codec anchors for rate–quality comparisons, in a low-delay P-only setting.

A learned P-only codec (one I-frame, then P-frames predicted from the past) is compared with:

==================  ==============================================================================================
anchor              settings (``rc="crf"``: constant rate factor; ``rc="qp"``: constant QP)
==================  ==============================================================================================
``x264-medium``     libx264 ``preset=medium``, ``tune=zerolatency``, ``keyint=infinite``, ``bframes=0``,
``x264-veryslow``   ``scenecut=0`` (one IDR, then P-frames only, no look-ahead, no frame reordering)
``x265-medium``     libx265, same meaning: ``tune=zerolatency``, ``keyint=-1`` (infinite), ``bframes=0``,
``x265-veryslow``   ``scenecut=0``
``svtav1``          libsvtav1 ``preset=8`` (``svtav1_preset`` to change), ``pred-struct=1`` (low delay),
                    ``keyint=-1``, ``lookahead=0``; ``crf``/``qp`` 0..63
``vvenc-<preset>``  VVenC (H.266) through the FFmpeg binary of the ``imageio-ffmpeg`` wheel (PyAV's FFmpeg has
                    no libvvenc): ``PicReordering=0`` (low delay), ``DecodingRefreshType=none``,
                    ``IntraPeriod=-1``, ``GOPSize=8``, constant ``qp``; presets faster/fast/medium/slow/slower.
                    VVenC's low-delay structure codes its inter pictures as low-delay *B* slices (both lists
                    reference past pictures only, as in the JVET LDB configuration); no picture is reordered.
==================  ==============================================================================================

Frames are uint8 RGB ``(H, W, 3)``. They are converted to 8-bit ``yuv420p`` (10-bit for VVenC, which accepts
nothing else) with swscale's default matrix (BT.601, limited range), the same conversion
:class:`s2vc.video_io.VideoReader` applies when it reads YUV video, and back to RGB after decoding; odd sizes are
edge-padded to even and cropped back. The size is the sum of the elementary-stream packets (parameter sets
included, no container), so ``bpp = 8·bytes / (W·H·frames)`` and ``kbps = 8·bytes·fps / frames / 1000``.

    from s2vc_evaluation.anchors import encode_anchor, sweep_to_bpp
    result = encode_anchor(frames, "x264-veryslow", quality=30)
    result.bpp, result.decoded, result.frame_types        # 0.07, [RGB frames], "IPPP…"
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["AnchorResult", "AnchorUnavailableError", "ANCHORS", "encode_anchor", "sweep_to_bpp", "available_anchors"]

VVENC_PRESETS = ("faster", "fast", "medium", "slow", "slower")

# name -> (encoder, decoder, preset)
ANCHORS: dict[str, tuple[str, str, str | None]] = {
    "x264-medium": ("libx264", "h264", "medium"),
    "x264-veryslow": ("libx264", "h264", "veryslow"),
    "x265-medium": ("libx265", "hevc", "medium"),
    "x265-veryslow": ("libx265", "hevc", "veryslow"),
    "svtav1": ("libsvtav1", "libdav1d", None),
    **{f"vvenc-{p}": ("libvvenc", "vvc", p) for p in VVENC_PRESETS},
}

_PICT = {0: "?", 1: "I", 2: "P", 3: "B", 4: "S", 5: "i", 6: "p", 7: "b"}


class AnchorUnavailableError(RuntimeError):
    """The anchor's encoder is not in any FFmpeg that can be found here."""


@dataclass
class AnchorResult:
    anchor: str
    quality: int            # the CRF or QP value
    rc: str                 # "crf" or "qp"
    width: int
    height: int
    fps: float
    num_bytes: int
    packet_sizes: list[int]
    decoded: list[np.ndarray] = field(repr=False)
    frame_types: str        # one letter per decoded frame: I, P, B
    key_frames: list[bool]
    encode_seconds: float
    decode_seconds: float
    bitstream: bytes = field(default=b"", repr=False)  # the elementary stream (Annex B for H.26x, OBUs for AV1)

    @property
    def frames(self) -> int:
        return len(self.decoded)

    @property
    def bpp(self) -> float:
        return 8.0 * self.num_bytes / (self.width * self.height * self.frames)

    @property
    def kbps(self) -> float:
        return 8.0 * self.num_bytes * self.fps / self.frames / 1000.0

    def summary(self) -> dict:
        return {"anchor": self.anchor, "rc": self.rc, "quality": self.quality, "frames": self.frames,
                "size": f"{self.width}x{self.height}", "bytes": self.num_bytes, "bpp": self.bpp, "kbps": self.kbps,
                "frame_types": self.frame_types, "encode_s": self.encode_seconds, "decode_s": self.decode_seconds}


def _check_frames(frames: Sequence[np.ndarray]) -> tuple[int, int]:
    if not len(frames):
        raise ValueError("no frames to encode")
    h, w = np.asarray(frames[0]).shape[:2]
    for f in frames:
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.shape != (h, w, 3):
            raise ValueError(f"expected uint8 RGB frames of shape {(h, w, 3)}, got {f.dtype} {f.shape}")
    return w, h


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def _encoder_options(encoder: str, preset: str | None, rc: str, quality: int, threads: int,
                     svtav1_preset: int) -> dict[str, str]:
    if encoder == "libx264":
        params = "keyint=infinite:min-keyint=1:bframes=0:scenecut=0:ref=3"
        return {rc: str(quality), "preset": preset, "tune": "zerolatency", "x264-params": params,
                "threads": str(threads)}
    if encoder == "libx265":
        params = f"keyint=-1:bframes=0:scenecut=0:log-level=error:pools={threads}"
        if rc == "qp":
            params += f":qp={quality}"
            return {"preset": preset, "tune": "zerolatency", "x265-params": params}
        return {"crf": str(quality), "preset": preset, "tune": "zerolatency", "x265-params": params}
    if encoder == "libsvtav1":
        params = f"pred-struct=1:keyint=-1:lookahead=0:lp={threads}"
        if rc == "qp":
            return {"qp": str(quality), "preset": str(svtav1_preset), "svtav1-params": params + ":rc=0:aq-mode=0"}
        return {"crf": str(quality), "preset": str(svtav1_preset), "svtav1-params": params}
    raise ValueError(encoder)


def _decode_packets(decoder: str, packets: list[bytes], width: int, height: int):
    import av

    ctx = av.CodecContext.create(decoder, "r")
    frames = []
    for data in packets:
        frames += ctx.decode(av.Packet(data))
    frames += ctx.decode(None)
    out = [f.to_ndarray(format="rgb24")[:height, :width] for f in frames]
    types = "".join(_PICT.get(int(f.pict_type), "?") for f in frames)
    return out, types, [bool(f.key_frame) for f in frames]


def _encode_pyav(frames, encoder, preset, rc, quality, fps, threads, svtav1_preset, pix_fmt):
    import av

    w, h = _check_frames(frames)
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height = w + w % 2, h + h % 2
    ctx.pix_fmt = pix_fmt
    rate = Fraction(fps).limit_denominator(1001)
    ctx.time_base, ctx.framerate = 1 / rate, rate
    ctx.options = _encoder_options(encoder, preset, rc, quality, threads, svtav1_preset)
    packets: list[bytes] = []
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(_even(np.asarray(frame)), format="rgb24").reformat(format=pix_fmt)
        vf.pts = i
        packets += [bytes(p) for p in ctx.encode(vf)]
    packets += [bytes(p) for p in ctx.encode(None)]
    enc_s = time.perf_counter() - t0
    header = bytes(ctx.extradata or b"")  # empty here: parameter sets travel in-band in the first packet
    return packets, header, enc_s


def _encode_vvenc(frames, preset, quality, fps, threads, ffmpeg):
    from .metrics import find_ffmpeg

    exe = ffmpeg or find_ffmpeg(require_encoder="libvvenc")
    if exe is None:
        raise AnchorUnavailableError(
            "VVenC anchors need an FFmpeg with libvvenc (PyAV's bundled FFmpeg has none): install the evaluation "
            "extra, pip install 's2vc[eval]' (its imageio-ffmpeg==0.8.1 wheel ships one), or set S2VC_FFMPEG")
    w, h = _check_frames(frames)
    with tempfile.TemporaryDirectory(prefix="s2vc-vvenc-") as tmp:
        raw, out = Path(tmp, "in.rgb"), Path(tmp, "out.266")
        with open(raw, "wb") as f:
            for frame in frames:
                f.write(_even(np.asarray(frame)).tobytes())
        params = "PicReordering=0:DecodingRefreshType=none:IntraPeriod=-1:GOPSize=8"
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w + w % 2}x{h + h % 2}", "-r", str(fps), "-i", str(raw), "-pix_fmt", "yuv420p10le",
               "-c:v", "libvvenc", "-preset", preset, "-qp", str(quality), "-threads", str(threads),
               "-vvenc-params", params, "-f", "vvc", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        enc_s = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise RuntimeError(f"ffmpeg libvvenc failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        stream = out.read_bytes()
    import av

    parser = av.CodecContext.create("vvc", "r")
    packets = [bytes(p) for p in parser.parse(stream) + parser.parse(None)]
    return packets, enc_s


def available_anchors() -> dict[str, str | None]:
    """Anchor name → ``None`` when it can run here, else the reason it cannot."""
    import av

    from .metrics import find_ffmpeg

    out: dict[str, str | None] = {}
    vvenc = find_ffmpeg(require_encoder="libvvenc")
    for name, (encoder, decoder, _) in ANCHORS.items():
        if encoder == "libvvenc":
            out[name] = None if vvenc and decoder in av.codecs_available else (
                "no FFmpeg with libvvenc (pip install 's2vc[eval]' for imageio-ffmpeg's)")
        else:
            out[name] = None if encoder in av.codecs_available and decoder in av.codecs_available else (
                f"PyAV's FFmpeg lacks {encoder} or {decoder}")
    return out


def encode_anchor(frames: Sequence[np.ndarray], anchor: str = "x264-veryslow", quality: int = 30, *, rc: str = "crf",
                  fps: float = 25.0, threads: int = 2, svtav1_preset: int = 8, pix_fmt: str = "yuv420p",
                  ffmpeg: str | None = None) -> AnchorResult:
    """Encode uint8 RGB frames with an anchor codec (low delay, P-only), decode them back, and measure.

    ``quality`` is the CRF (``rc="crf"``) or constant QP (``rc="qp"``); VVenC supports QP only (``rc`` is
    ignored). Timings are wall-clock seconds of the whole clip (encode includes the RGB→YUV conversion).
    """
    if anchor not in ANCHORS:
        raise ValueError(f"unknown anchor {anchor!r}; choose from {sorted(ANCHORS)}")
    if rc not in ("crf", "qp"):
        raise ValueError(f"rc must be 'crf' or 'qp', got {rc!r}")
    encoder, decoder, preset = ANCHORS[anchor]
    w, h = _check_frames(frames)
    if encoder == "libvvenc":
        packets, enc_s = _encode_vvenc(frames, preset, quality, fps, threads, ffmpeg)
        header, rc = b"", "qp"
    else:
        import av

        if encoder not in av.codecs_available:
            raise AnchorUnavailableError(f"PyAV's FFmpeg has no {encoder} encoder")
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only on stderr
        packets, header, enc_s = _encode_pyav(frames, encoder, preset, rc, quality, fps, threads, svtav1_preset,
                                              pix_fmt)
    t0 = time.perf_counter()
    decoded, types, keys = _decode_packets(decoder, packets, w, h)
    dec_s = time.perf_counter() - t0
    if len(decoded) != len(frames):
        raise RuntimeError(f"{anchor}: {len(frames)} frames encoded but {len(decoded)} decoded")
    sizes = [len(p) for p in packets]
    return AnchorResult(anchor=anchor, quality=quality, rc=rc, width=w, height=h, fps=fps,
                        num_bytes=sum(sizes) + len(header), packet_sizes=sizes, decoded=decoded, frame_types=types,
                        key_frames=keys, encode_seconds=enc_s, decode_seconds=dec_s,
                        bitstream=header + b"".join(packets))


def sweep_to_bpp(frames: Sequence[np.ndarray], anchor: str = "x264-veryslow", *, bpp_range: tuple[float, float] = (0.0, 0.1),
                 points: int = 4, start: int | None = None, step: int = 2, max_quality: int | None = None,
                 **kwargs) -> list[AnchorResult]:
    """Encode at rising CRF/QP values until ``points`` encodings land inside ``bpp_range`` (lo, hi].

    Starts at ``start`` (default 22 for x264/x265, 30 for SVT-AV1, 27 for VVenC) and steps by ``step``; values
    that give more than ``hi`` bpp are skipped, the sweep stops at ``max_quality`` (51 for H.26x and VVenC's
    QP, 63 for AV1) or when the rate falls below ``lo``. Returns the in-range results, highest rate first.
    Encodings above the range are cheap to skip with a larger ``start``.
    """
    encoder = ANCHORS[anchor][0] if anchor in ANCHORS else None
    if encoder is None:
        raise ValueError(f"unknown anchor {anchor!r}; choose from {sorted(ANCHORS)}")
    lo, hi = bpp_range
    if not hi > lo >= 0:
        raise ValueError(f"bpp_range must be (lo, hi) with 0 <= lo < hi, got {bpp_range}")
    default_start = {"libx264": 22, "libx265": 22, "libsvtav1": 30, "libvvenc": 27}[encoder]
    top = max_quality if max_quality is not None else (63 if encoder == "libsvtav1" else 51)
    q = default_start if start is None else start
    found: list[AnchorResult] = []
    while q <= top and len(found) < points:
        result = encode_anchor(frames, anchor, q, **kwargs)
        if result.bpp <= lo:
            break
        if result.bpp <= hi:
            found.append(result)
        q += step
    return found
