"""``s2vc eval`` (a plugin command of the s2vc CLI): rate–quality of S²VC against ffmpeg anchors."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def eval_command(
    clips: List[Path] = typer.Argument(..., help="Video clips to evaluate on (mp4/h264/y4m/…)."),
    out: Path = typer.Option(Path("eval_out"), "--out", "-o", help="Folder for points.csv, bd_rate.csv, speed.csv, ceiling.csv and PNG plots."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model (default: the shipped one)."),
    rates: Optional[str] = typer.Option(None, "--rates", help="Comma-separated rate points (default: all)."),
    anchors: str = typer.Option("x264-medium", "--anchors", help="Comma-separated anchors: x264-medium, x264-veryslow, x265-medium, x265-veryslow, svtav1, vvenc-medium."),
    frames: int = typer.Option(16, "--frames", "-n", min=1),
    downscale: int = typer.Option(1, "--downscale", min=1, help="Downscale the source by this factor first (2 for 720p/1080p)."),
    bpp_max: float = typer.Option(0.15, "--bpp-max", help="Upper end of the anchors' bpp range."),
    anchor_points: int = typer.Option(6, "--anchor-points", min=2, help="Rate points per anchor (CRF/QP steps of 2)."),
    match_range: bool = typer.Option(True, "--match-range/--fixed-range", help="Sweep the anchors over S²VC's own bpp span on each clip (widened by 1.4× each side, within 0.005..--bpp-max) so the curves overlap; --fixed-range uses 0.005..--bpp-max."),
    metrics: str = typer.Option("psnr,psnr_yuv,ms_ssim,vmaf", "--metrics", help="psnr, psnr_yuv, ms_ssim, vmaf."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Encode clips with S²VC and the anchors at matched low rates; write CSVs (BD-rate, speed, the model's
    autoencoder ceiling) and plots."""
    from rich.console import Console

    from .evaluate import EvalConfig, evaluate

    console = Console(stderr=True)
    cfg = EvalConfig(
        clips=list(clips), out=out, frames=frames, model=model,
        rates=[int(r) for r in rates.split(",")] if rates else None, anchors=[a for a in anchors.split(",") if a],
        bpp_range=(0.005, bpp_max), anchor_points=anchor_points, match_range=match_range, downscale=downscale, metrics=tuple(m for m in metrics.split(",") if m), device=device,
    )
    try:
        result = evaluate(cfg, log=lambda s: console.print(s, highlight=False))
    except (ValueError, RuntimeError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2)
    for row in result["bd_rate"]:
        if row["clip"] == "mean":
            console.print(f"BD-rate vs {row['anchor']} ({row['metric']}): {row['bd_rate_percent']:.1f} % ({row['note']})")
    for row in result["ceiling"]:
        values = ", ".join(f"{m} {row[m]:.2f}" for m in ("psnr", "ms_ssim", "vmaf") if m in row)
        console.print(f"autoencoder ceiling on {row['clip']} (VAE alone, no coding): {values}")
    console.print(f"results in {out}")
