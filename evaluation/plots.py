"""Rate–quality plots (matplotlib, Agg backend): one PNG per clip and metric, every codec on it, and the model's
autoencoder ceiling as a dashed line when given."""

from __future__ import annotations

import math
from pathlib import Path

PLOT_METRICS = {"psnr": "PSNR RGB (dB)", "psnr_yuv": "PSNR YUV 6:1:1 (dB)", "ms_ssim": "MS-SSIM", "vmaf": "VMAF"}


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def plot_rate_quality(points: list[dict], out: Path, ceilings: list[dict] | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for clip in sorted({p["clip"] for p in points}):
        for metric, label in PLOT_METRICS.items():
            rows = [p for p in points if p["clip"] == clip and _finite(p.get(metric))]
            if not rows:
                continue
            fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=100)
            for codec in dict.fromkeys(p["codec"] for p in rows):
                sel = sorted((p for p in rows if p["codec"] == codec), key=lambda p: p["bpp"])
                ax.plot([p["bpp"] for p in sel], [p[metric] for p in sel], marker="o", ms=3, lw=1.2, label=codec)
            for ceiling in (c for c in ceilings or () if c["clip"] == clip and _finite(c.get(metric))):
                ax.axhline(ceiling[metric], color="grey", ls="--", lw=1, label="s2vc autoencoder ceiling")
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel(label)
            ax.set_title(clip, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out / f"rd_{clip}_{metric}.png"
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
    return written
