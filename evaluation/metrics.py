"""Frame-quality metrics for rate–quality evaluation.

All functions take uint8 RGB frames, ``(H, W, 3)`` arrays (or lists of them for the sequence functions), the
layout that :class:`s2vc.video_io.VideoReader` and :func:`s2vc.pipeline.decode_stream` produce.

* :func:`psnr` — PSNR on RGB (one MSE over the three channels, peak 255).
* :func:`psnr_yuv` — per-component PSNR on Y'CbCr and the JVET 6:1:1 weighted average
  ``(6·Y + Cb + Cr) / 8`` of the component PSNRs. The conversion is BT.709 (default) or BT.601, 8-bit
  limited ("studio") range by default (Y' in 16..235, Cb/Cr in 16..240; ``full_range=True`` for 0..255),
  4:4:4 (no chroma subsampling) and kept in float (not rounded), so identical frames give ``inf``.
* :func:`ms_ssim` — MS-SSIM of Wang, Simoncelli & Bovik (2003): 5 scales, weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 11×11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03,
  ``valid`` filtering, 2×2 average down-sampling between scales (an odd row/column is completed by
  repeating the edge, as the reference MATLAB code's symmetric filter does). Negative contrast–structure
  terms are clamped to 0 (as pytorch-msssim does) so the product stays real. Computed per RGB channel
  and averaged (the convention of learned-codec papers), or on luma with ``channel="y"``.
* :func:`vmaf` — Netflix VMAF (model vmaf_v0.6.1 built into libvmaf) through an FFmpeg binary built with
  libvmaf; the ``eval`` extra installs one (the ``imageio-ffmpeg`` wheel's static FFmpeg). Frames are
  converted to 8-bit yuv420p by FFmpeg (swscale default, BT.601 limited range) for both inputs.
* :func:`lpips`, :func:`dists`, :func:`fid` — learned metrics that need weights. Nothing is ever
  downloaded: each takes local weight files and raises :class:`MissingWeightsError` without them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "MissingWeightsError", "VmafUnavailableError", "rgb_to_ycbcr", "mse", "psnr", "psnr_yuv", "ms_ssim", "ssim",
    "vmaf", "find_ffmpeg", "lpips", "dists", "fid", "sequence_metrics",
]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# Kr, Kb of the luma equation Y' = Kr R' + (1 - Kr - Kb) G' + Kb B'
_KRKB = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}


class MissingWeightsError(RuntimeError):
    """A learned metric was asked for without the local weight files it needs."""


class VmafUnavailableError(RuntimeError):
    """No FFmpeg with libvmaf could be found."""


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"frames differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) RGB frames, got shape {a.shape}")
    return a, b


def _psnr_from_mse(m: float, peak: float = 255.0) -> float:
    return math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _check_pair(a, b)
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 RGB frames over all three channels (``inf`` when identical)."""
    return _psnr_from_mse(mse(a, b))


def rgb_to_ycbcr(frame: np.ndarray, matrix: str = "bt709", full_range: bool = False) -> np.ndarray:
    """uint8 R'G'B' ``(…, 3)`` → float64 Y'CbCr ``(…, 3)`` in 8-bit code values (not rounded), 4:4:4."""
    if matrix not in _KRKB:
        raise ValueError(f"matrix must be one of {sorted(_KRKB)}, got {matrix!r}")
    kr, kb = _KRKB[matrix]
    rgb = np.asarray(frame, dtype=np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + (1.0 - kr - kb) * g + kb * b
    pb = (b - y) / (2.0 * (1.0 - kb))
    pr = (r - y) / (2.0 * (1.0 - kr))
    if full_range:
        out = (y * 255.0, 128.0 + pb * 255.0, 128.0 + pr * 255.0)
    else:
        out = (16.0 + 219.0 * y, 128.0 + 224.0 * pb, 128.0 + 224.0 * pr)
    return np.stack(out, axis=-1)


def psnr_yuv(a: np.ndarray, b: np.ndarray, matrix: str = "bt709", full_range: bool = False) -> dict[str, float]:
    """Per-component PSNR on Y'CbCr (peak 255) and the 6:1:1 weighted average ``(6·Y + U + V) / 8``.

    Returns ``{"y", "u", "v", "yuv"}``. A component with zero error has PSNR ``inf`` (and so has ``yuv``).
    """
    a, b = _check_pair(a, b)
    ya, yb = rgb_to_ycbcr(a, matrix, full_range), rgb_to_ycbcr(b, matrix, full_range)
    comps = [_psnr_from_mse(float(np.mean((ya[..., c] - yb[..., c]) ** 2))) for c in range(3)]
    return {"y": comps[0], "u": comps[1], "v": comps[2], "yuv": (6 * comps[0] + comps[1] + comps[2]) / 8}


# ----------------------------------------------------------------------------------------------- MS-SSIM


def _gaussian_window(size: int = 11, sigma: float = 1.5):
    import torch

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _to_planes(frame: np.ndarray, channel: str):
    """uint8 RGB → torch float64 ``(C, 1, H, W)`` planes in 0..255."""
    import torch

    if channel == "rgb":
        planes = np.moveaxis(np.asarray(frame, dtype=np.float64), -1, 0)
    elif channel == "y":
        planes = rgb_to_ycbcr(frame)[..., :1].transpose(2, 0, 1)
    else:
        raise ValueError(f"channel must be 'rgb' or 'y', got {channel!r}")
    return torch.from_numpy(np.ascontiguousarray(planes)).unsqueeze(1)


def _ssim_terms(x, y, win, data_range: float, k1: float, k2: float):
    """Mean SSIM and mean contrast–structure of planes ``(N, 1, H, W)`` with a separable valid filter."""
    import torch.nn.functional as F

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    wh, wv = win.view(1, 1, 1, -1), win.view(1, 1, -1, 1)

    def filt(t):
        return F.conv2d(F.conv2d(t, wh), wv)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.flatten(1).mean(1), cs_map.flatten(1).mean(1)


def _downsample(t):
    import torch.nn.functional as F

    h, w = t.shape[-2:]
    if h % 2 or w % 2:  # complete an odd row/column by repeating the edge (MATLAB 'symmetric' filtering)
        t = F.pad(t, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(t, 2)


def ssim(a: np.ndarray, b: np.ndarray, channel: str = "rgb", win_size: int = 11, sigma: float = 1.5) -> float:
    """Single-scale SSIM (Wang et al. 2004), Gaussian 11/1.5, averaged over channels."""
    a, b = _check_pair(a, b)
    if min(a.shape[:2]) < win_size:
        raise ValueError(f"frame {a.shape[1]}x{a.shape[0]} is smaller than the {win_size}-pixel SSIM window")
    s, _ = _ssim_terms(_to_planes(a, channel), _to_planes(b, channel), _gaussian_window(win_size, sigma), 255.0, 0.01, 0.03)
    return float(s.mean())


def ms_ssim(a: np.ndarray, b: np.ndarray, channel: str = "rgb", weights: Sequence[float] = MS_SSIM_WEIGHTS,
            win_size: int = 11, sigma: float = 1.5) -> float:
    """MS-SSIM (Wang, Simoncelli & Bovik 2003) of two uint8 RGB frames; 1.0 when identical.

    The coarsest of the ``len(weights)`` scales must still hold the window: each side needs at least
    ``(win_size - 1) * 2**(scales - 1) + 1`` pixels (161 for the standard 5 scales and 11-pixel window).
    """
    import torch

    a, b = _check_pair(a, b)
    scales = len(weights)
    need = (win_size - 1) * 2 ** (scales - 1) + 1
    if min(a.shape[:2]) < need:
        raise ValueError(f"MS-SSIM with {scales} scales and an {win_size}-pixel window needs frames of at least "
                         f"{need}x{need}, got {a.shape[1]}x{a.shape[0]}")
    x, y = _to_planes(a, channel), _to_planes(b, channel)
    win = _gaussian_window(win_size, sigma)
    w = torch.tensor(list(weights), dtype=torch.float64)
    values = []
    for i in range(scales):
        s, cs = _ssim_terms(x, y, win, 255.0, 0.01, 0.03)
        values.append(torch.relu(s if i == scales - 1 else cs))
        if i < scales - 1:
            x, y = _downsample(x), _downsample(y)
    stack = torch.stack(values, dim=0)  # (scales, C)
    per_channel = torch.prod(stack ** w.view(-1, 1), dim=0)
    return float(per_channel.mean())


# ----------------------------------------------------------------------------------------------- VMAF


def find_ffmpeg(require_filter: str | None = None, require_encoder: str | None = None) -> str | None:
    """Path of an FFmpeg binary that has ``require_filter``/``require_encoder``, or ``None``.

    Tried in order: ``$S2VC_FFMPEG``, the binary of the ``imageio-ffmpeg`` wheel (``eval`` extra), ``ffmpeg``
    on ``PATH``.
    """
    candidates = [os.environ.get("S2VC_FFMPEG")]
    try:
        import imageio_ffmpeg

        candidates.append(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:  # not installed, or its binary is missing
        pass
    candidates.append(shutil.which("ffmpeg"))
    for exe in dict.fromkeys(c for c in candidates if c):
        if not os.path.isfile(exe):
            continue
        if require_filter and not _ffmpeg_has(exe, "-filters", require_filter):
            continue
        if require_encoder and not _ffmpeg_has(exe, "-encoders", require_encoder):
            continue
        return exe
    return None


_HAS_CACHE: dict[tuple[str, str, str], bool] = {}


def _ffmpeg_has(exe: str, listing: str, name: str) -> bool:
    key = (exe, listing, name)
    if key not in _HAS_CACHE:
        try:
            out = subprocess.run([exe, "-hide_banner", listing], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _HAS_CACHE[key] = any(len(p := line.split()) >= 2 and p[1] == name for line in out.splitlines())
    return _HAS_CACHE[key]


def _write_raw(frames: Sequence[np.ndarray], path: Path) -> tuple[int, int]:
    h, w = np.asarray(frames[0]).shape[:2]
    with open(path, "wb") as f:
        for fr in frames:
            fr = np.asarray(fr)
            if fr.shape != (h, w, 3) or fr.dtype != np.uint8:
                raise ValueError(f"expected uint8 frames of shape {(h, w, 3)}, got {fr.dtype} {fr.shape}")
            f.write(np.ascontiguousarray(fr).tobytes())
    return w, h


def vmaf(reference: Sequence[np.ndarray], distorted: Sequence[np.ndarray], *, fps: float = 25.0,
         model: str = "version=vmaf_v0.6.1", threads: int = 2, ffmpeg: str | None = None) -> dict:
    """VMAF of a distorted clip against its reference (lists of uint8 RGB frames of one size).

    Runs FFmpeg's ``libvmaf`` filter (built-in model ``vmaf_v0.6.1``; ``model="version=vmaf_4k_v0.6.1"`` or
    ``"path=/my/model.json"`` for others). Returns ``{"mean", "harmonic_mean", "min", "max", "frames": [...]}``.
    Raises :class:`VmafUnavailableError` when no FFmpeg with libvmaf is found.
    """
    if len(reference) != len(distorted) or not reference:
        raise ValueError(f"need the same, non-zero number of frames, got {len(reference)} and {len(distorted)}")
    exe = ffmpeg or find_ffmpeg(require_filter="libvmaf")
    if exe is None or not _ffmpeg_has(exe, "-filters", "libvmaf"):
        raise VmafUnavailableError(
            "VMAF needs an FFmpeg binary built with libvmaf, and none was found (PyAV's bundled FFmpeg has no "
            "libvmaf). Install the evaluation extra, pip install 's2vc[eval]' (its imageio-ffmpeg==0.8.1 wheel "
            "ships a static FFmpeg with libvmaf), or point S2VC_FFMPEG at such a binary.")
    with tempfile.TemporaryDirectory(prefix="s2vc-vmaf-") as tmp:
        ref_path, dist_path, log_path = Path(tmp, "ref.rgb"), Path(tmp, "dist.rgb"), Path(tmp, "vmaf.json")
        size = _write_raw(reference, ref_path)
        if _write_raw(distorted, dist_path) != size:
            raise ValueError("reference and distorted frames differ in size")
        raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", str(fps)]
        graph = (f"[0:v]format=yuv420p,setpts=PTS-STARTPTS[dis];[1:v]format=yuv420p,setpts=PTS-STARTPTS[ref];"
                 f"[dis][ref]libvmaf=model={model.replace(':', chr(92) + ':')}:n_threads={threads}"
                 f":log_fmt=json:log_path={log_path.as_posix()}")
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", *raw, "-i", str(dist_path), *raw,
               "-i", str(ref_path), "-lavfi", graph, "-f", "null", "-"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not log_path.exists():
            raise RuntimeError(f"ffmpeg libvmaf failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        log = json.loads(log_path.read_text())
    pooled = log["pooled_metrics"]["vmaf"]
    return {"mean": pooled["mean"], "harmonic_mean": pooled["harmonic_mean"], "min": pooled["min"],
            "max": pooled["max"], "frames": [f["metrics"]["vmaf"] for f in log["frames"]]}


# ----------------------------------------------------------------------------------------------- learned metrics

_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _need(path, what: str, how: str) -> Path:
    if path is None:
        raise MissingWeightsError(f"{what} needs local weights and nothing is downloaded: {how}")
    p = Path(path)
    if not p.is_file():
        raise MissingWeightsError(f"{what}: weights file {p} does not exist ({how})")
    return p


def _load_state(path: Path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _backbone_layers(state: dict, net: str, l2pool: bool = False):
    """torchvision-layout ``features.N`` convolutions of AlexNet or VGG16 as a list of callables."""
    import torch
    import torch.nn.functional as F

    def conv(i, stride=1, pad=1):
        w, b = state[f"features.{i}.weight"].float(), state[f"features.{i}.bias"].float()
        return lambda t: F.relu(F.conv2d(t, w, b, stride=stride, padding=pad))

    if net == "alex":
        pool = lambda t: F.max_pool2d(t, 3, 2)  # noqa: E731
        # taps after relu1..relu5
        return [conv(0, 4, 2)], [pool, conv(3, 1, 2)], [pool, conv(6)], [conv(8)], [conv(10)]
    if net != "vgg":
        raise ValueError(f"backbone must be 'alex' or 'vgg', got {net!r}")
    stages, cur, idx = [], [], 0
    for v in _VGG16_CFG:
        if v == "M":
            stages.append(cur)
            if l2pool:
                g = torch.hann_window(5, periodic=False, dtype=torch.float32)[1:-1]
                k = g[:, None] * g[None, :]
                k = k / k.sum()
                cur = [lambda t, k=k: torch.sqrt(F.conv2d(t * t, k.expand(t.shape[1], 1, 3, 3), stride=2, padding=1,
                                                          groups=t.shape[1]) + 1e-12)]
            else:
                cur = [lambda t: F.max_pool2d(t, 2, 2)]
            idx += 1
        else:
            cur.append(conv(idx))
            idx += 2
    return stages  # five stages ending at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


def _to_tensor01(frame: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(frame, dtype=np.float32) / 255.0)).permute(2, 0, 1)[None]


def _run_stages(x, stages):
    feats = []
    for stage in stages:
        for layer in stage:
            x = layer(x)
        feats.append(x)
    return feats


def lpips(a: np.ndarray, b: np.ndarray, *, weights: str | os.PathLike | None = None,
          backbone: str | os.PathLike | None = None, net: str = "alex") -> float:
    """LPIPS v0.1 (Zhang et al. 2018) with local weights only.

    ``weights``: the LPIPS linear-layer file (``lpips`` package ``weights/v0.1/alex.pth`` or ``vgg.pth``, keys
    ``lin0.model.1.weight`` …); ``backbone``: the torchvision ImageNet state dict of AlexNet
    (``alexnet-owt-7be5be79.pth``) or VGG16 (``vgg16-397923af.pth``). Lower is better; 0 for identical frames.
    """
    import torch

    how = ("pass weights=<lpips v0.1 alex.pth|vgg.pth> and backbone=<torchvision alexnet/vgg16 .pth> "
           "from your own copies")
    lin = _load_state(_need(weights, "LPIPS", how))
    stages = _backbone_layers(_load_state(_need(backbone, "LPIPS backbone", how)), net)
    a, b = _check_pair(a, b)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    with torch.no_grad():
        fa, fb = ((_run_stages((_to_tensor01(f) * 2 - 1 - shift) / scale, stages)) for f in (a, b))
        total = 0.0
        for k, (x, y) in enumerate(zip(fa, fb)):
            x = x / (torch.sqrt((x * x).sum(1, keepdim=True)) + 1e-10)
            y = y / (torch.sqrt((y * y).sum(1, keepdim=True)) + 1e-10)
            w = lin[f"lin{k}.model.1.weight"].float()
            total += float(torch.nn.functional.conv2d((x - y) ** 2, w).mean())
    return total


def dists(a: np.ndarray, b: np.ndarray, *, weights: str | os.PathLike | None = None,
          backbone: str | os.PathLike | None = None) -> float:
    """DISTS (Ding et al. 2020) with local weights only.

    ``weights``: the DISTS ``weights.pt`` (tensors ``alpha`` and ``beta``, 1475 channels each);
    ``backbone``: the torchvision ImageNet VGG16 state dict (``vgg16-397923af.pth``). Lower is better.
    """
    import torch

    how = "pass weights=<DISTS weights.pt with alpha/beta> and backbone=<torchvision vgg16 .pth> from your own copies"
    ab = _load_state(_need(weights, "DISTS", how))
    stages = _backbone_layers(_load_state(_need(backbone, "DISTS backbone", how)), "vgg", l2pool=True)
    a, b = _check_pair(a, b)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    alpha, beta = ab["alpha"].float().flatten(), ab["beta"].float().flatten()
    with torch.no_grad():
        xa, xb = _to_tensor01(a), _to_tensor01(b)
        fa = [xa] + _run_stages((xa - mean) / std, stages)
        fb = [xb] + _run_stages((xb - mean) / std, stages)
        chans = [f.shape[1] for f in fa]
        if sum(chans) != alpha.numel() or alpha.numel() != beta.numel():
            raise ValueError(f"DISTS weights hold {alpha.numel()}/{beta.numel()} channels, the network has {sum(chans)}")
        w_sum = alpha.sum() + beta.sum()
        d1 = d2 = 0.0
        c1 = c2 = 1e-6
        start = 0
        for x, y, c in zip(fa, fb, chans):
            al, be = alpha[start:start + c] / w_sum, beta[start:start + c] / w_sum
            start += c
            mx, my = x.mean([2, 3]), y.mean([2, 3])
            s1 = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            vx = ((x - mx[..., None, None]) ** 2).mean([2, 3])
            vy = ((y - my[..., None, None]) ** 2).mean([2, 3])
            cov = (x * y).mean([2, 3]) - mx * my
            s2 = (2 * cov + c2) / (vx + vy + c2)
            d1 = d1 + float((al * s1[0]).sum())
            d2 = d2 + float((be * s2[0]).sum())
    return 1.0 - (d1 + d2)


def fid(reference: Sequence[np.ndarray], distorted: Sequence[np.ndarray], *,
        weights: str | os.PathLike | None = None, batch: int = 16) -> float:
    """Fréchet Inception Distance between two sets of uint8 RGB frames, with a local TorchScript extractor.

    ``weights``: a TorchScript Inception-v3 feature network, e.g. ``inception-2015-12-05.pt`` as used by
    clean-fid/StyleGAN (called as ``model(x, return_features=True)`` on float 0..255 images resized to
    299×299, giving 2048-d features). Needs at least 2 frames per set (FID is unreliable below thousands).
    """
    import torch
    import torch.nn.functional as F
    from scipy import linalg

    path = _need(weights, "FID", "pass weights=<TorchScript inception-2015-12-05.pt> from your own copy")
    if len(reference) < 2 or len(distorted) < 2:
        raise ValueError("FID needs at least 2 frames in each set")
    net = torch.jit.load(str(path), map_location="cpu").eval()

    def features(frames):
        out = []
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.stack([np.asarray(f, dtype=np.float32) for f in frames[i:i + batch]]))
            x = F.interpolate(x.permute(0, 3, 1, 2), size=(299, 299), mode="bilinear", align_corners=False)
            with torch.no_grad():
                try:
                    f = net(x, return_features=True)
                except (RuntimeError, TypeError):
                    f = net(x)
            out.append(f.reshape(f.shape[0], -1).double().numpy())
        return np.concatenate(out)

    f1, f2 = features(reference), features(distorted)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ----------------------------------------------------------------------------------------------- sequences


def sequence_metrics(reference: Sequence[np.ndarray], distorted: Sequence[np.ndarray], *,
                     metrics: Sequence[str] = ("psnr", "psnr_yuv", "ms_ssim"), fps: float = 25.0,
                     matrix: str = "bt709") -> dict[str, float]:
    """Frame-averaged metrics of a clip: ``psnr`` (RGB), ``psnr_y``/``psnr_u``/``psnr_v``/``psnr_yuv``
    (with ``"psnr_yuv"``), ``ms_ssim`` and ``vmaf`` (mean of frames). PSNR averages per-frame dB values
    (the usual codec-evaluation convention); a frame with zero error has PSNR ``inf``, and so has the mean."""
    if len(reference) != len(distorted) or not reference:
        raise ValueError(f"need the same, non-zero number of frames, got {len(reference)} and {len(distorted)}")
    out: dict[str, float] = {}
    for name in metrics:
        if name == "psnr":
            out["psnr"] = float(np.mean([psnr(r, d) for r, d in zip(reference, distorted)]))
        elif name == "psnr_yuv":
            rows = [psnr_yuv(r, d, matrix) for r, d in zip(reference, distorted)]
            for k in ("y", "u", "v", "yuv"):
                out[f"psnr_{k}"] = float(np.mean([row[k] for row in rows]))
        elif name == "ms_ssim":
            out["ms_ssim"] = float(np.mean([ms_ssim(r, d) for r, d in zip(reference, distorted)]))
        elif name == "vmaf":
            out["vmaf"] = float(vmaf(reference, distorted, fps=fps)["mean"])
        else:
            raise ValueError(f"unknown metric {name!r} (psnr, psnr_yuv, ms_ssim, vmaf)")
    return out
