"""``s2vc train``: train one stage of one rate point (registered into the s2vc CLI as a plugin command).

Imports stay inside the command so that ``s2vc --help`` does not pay for torch training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def train(
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (config.json, metrics.csv, checkpoints/, model/)."),
    corpus: Path = typer.Option(..., "--corpus", help="Training corpus folder made by `python -m training.data --out DIR`."),
    stage: str = typer.Option("inter", "--stage", help="vae | intra | inter (train them in this order) | decoder (the VAE decoder alone, adapted to the trained codec's x0 at every rate point; optional last stage)."),
    preset: str = typer.Option("tiny", "--preset", help="Network widths when starting from scratch."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from an s2vc checkpoint folder (e.g. the previous stage's RUN/model) or the official release root."),
    rate: int = typer.Option(0, "--rate", help="Rate point to train (0 = fewest bits)."),
    init_rate_from: Optional[int] = typer.Option(None, "--init-rate-from", help="Copy this rate point's networks into --rate first."),
    num_rates: int = typer.Option(4, "--num-rates", help="Rate points of a model built from scratch."),
    freeze_base: Optional[bool] = typer.Option(None, "--freeze-base/--train-base", help="Train only LoRA, TCG blocks and heads of the U-Net (default: on for the official preset)."),
    lmbda: float = typer.Option(0.5, "--lambda", help="Weight of bits per pixel against the distortion (higher: fewer bits)."),
    steps: int = typer.Option(1000, "--steps", min=1),
    batch: int = typer.Option(4, "--batch", min=1),
    frames: int = typer.Option(3, "--frames", min=1, help="Frames per training sample (the inter cascade length)."),
    crop: int = typer.Option(128, "--crop", help="Crop size, a multiple of 64."),
    lr: float = typer.Option(2e-4, "--lr", help="Peak learning rate (AdamW)."),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant | cosine (decays to --lr-final-ratio·lr by the last step)."),
    lr_final_ratio: float = typer.Option(0.05, "--lr-final-ratio", help="Cosine schedule: the last step's learning rate as a fraction of --lr."),
    warmup: int = typer.Option(0, "--warmup", min=0, help="Steps of linear learning-rate warm-up."),
    reinit_vae: bool = typer.Option(False, "--reinit-vae", help="vae stage: start the VAE from random weights (the codec networks of --init are kept)."),
    w_perc: float = typer.Option(0.5, "--w-perc", help="Weight of the perceptual term (1 − MS-SSIM) against L1."),
    rescale_x0: bool = typer.Option(False, "--rescale-x0", help="intra/inter: first scale the U-Net's output layers so that x0 has the VAE latent's spread (for a model whose x0 drifted; combine with --w-latent)."),
    w_latent: float = typer.Option(0.0, "--w-latent", help="intra/inter: weight of ‖x0 − VAE latent of the frame‖², which keeps the codec's output inside the VAE's latent distribution."),
    reset_interval: Optional[int] = typer.Option(
        None, "--reset-interval", min=1,
        help="inter: P-frames between context re-anchors in the cascades, recorded in the saved model as the codec's default (default: the --init model's, else 32).",
    ),
    adv_start: int = typer.Option(200, "--adv-start", help="Step from which the adversarial term is on."),
    w_adv: float = typer.Option(0.01, "--w-adv"),
    val_clip: Optional[Path] = typer.Option(None, "--val-clip", help="A clip for validation bpp/PSNR with real bitstreams."),
    val_frames: int = typer.Option(4, "--val-frames"),
    log_every: int = typer.Option(25, "--log-every"),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from RUN/checkpoints/last.pt when present."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (used when present)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
    checkpoint_minutes: float = typer.Option(5.0, "--checkpoint-minutes", help="Also checkpoint (last.pt and the compact state/) when this many minutes passed since the last checkpoint."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop cleanly after this many minutes (checkpoint, state/, model/); run the same command again to go on."),
    train_unet: bool = typer.Option(True, "--train-unet/--freeze-unet", help="intra/inter: train the codec U-Net too (freeze it to fine-tune a rate point that shares another's U-Net)."),
    continue_from: Optional[Path] = typer.Option(None, "--continue-from", help="Carry on a run from its compact state folder (RUN/state, or one kept in git): its configuration and step, float16 weights; only --out, --corpus, --device, --threads, --max-minutes and --checkpoint-minutes are taken from this command."),
) -> None:
    """Train one stage of one rate point; resumable; prints the data-set summary and a progress bar with losses."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .data import ClipDataset, summary as corpus_summary
    from .loop import batch_iterator, make_validator
    from .trainer import TrainConfig, Trainer

    console = Console(stderr=True)
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        console.print("[yellow]CUDA is not available; training on the CPU[/]")
        device = "cpu"
    if continue_from is not None:
        from .compact import read_run

        try:
            run = read_run(continue_from)
        except ValueError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(code=2)
        if run.get("finished"):
            console.print(f"[yellow]{continue_from} is a finished run (step {run['step']}); nothing to continue[/]")
            raise typer.Exit(code=0)
        cfg = TrainConfig(**{**run["config"], "out": str(out), "init": str(continue_from), "start_step": int(run["step"]),
                             "rewarm": 20, "init_rate_from": None, "rescale_x0": False, "reinit_vae": False, "device": device,
                             "max_minutes": max_minutes, "checkpoint_minutes": checkpoint_minutes})
        stage, rate, steps, batch, seed, crop = cfg.stage, cfg.rate, cfg.steps, cfg.batch, cfg.seed, cfg.crop
        console.print(f"continuing {stage} r{rate} of {continue_from} at step {cfg.start_step}/{steps}")
    else:
        cfg = TrainConfig(
            out=str(out), stage=stage, preset=preset, init=str(init) if init else None, num_rates=num_rates, rate=rate,
            init_rate_from=init_rate_from, freeze_base=freeze_base, lmbda=lmbda, steps=steps, batch=batch, frames=frames if stage in ("inter", "decoder") else 1,
            crop=crop, lr=lr, lr_schedule=lr_schedule, lr_final_ratio=lr_final_ratio, warmup=warmup, reinit_vae=reinit_vae,
            w_perc=w_perc, w_latent=w_latent, rescale_x0=rescale_x0, adv_start=adv_start, w_adv=w_adv, reset_interval=reset_interval, log_every=log_every, checkpoint_every=checkpoint_every,
            seed=seed, device=device, checkpoint_minutes=checkpoint_minutes, max_minutes=max_minutes, train_unet=train_unet,
            )
    try:
        cfg.validate()
        dataset = ClipDataset(corpus, frames=cfg.frames, crop=crop, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2)
    console.print(corpus_summary(corpus))
    validate = make_validator(val_clip, val_frames, rate) if val_clip else None
    trainer = Trainer(cfg, batch_iterator(dataset, batch, seed), validate=validate)
    if resume and trainer.resume():
        console.print(f"resumed at step {trainer.step}")
    label = f"{stage} all rates" if stage == "decoder" else f"{stage} r{rate}"
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("train", total=steps, completed=trainer.step, info="")

        def progress(step: int, m: dict[str, float]) -> None:
            info = f"loss {m['loss']:.4f} bpp {m['bpp']:.4f} psnr {m['psnr']:.2f}"
            bar.update(task, completed=step, info=info)

        trainer.fit(progress)
    if trainer.stopped_early:
        console.print(f"stopped after {max_minutes} min at step {trainer.step}/{steps}; run the same command to go on "
                      f"(or --continue-from {out / 'state'} on another machine)")
    console.print(f"model written to {out / 'model'}; compact state in {out / 'state'}; metrics in {out / 'metrics.csv'}")
