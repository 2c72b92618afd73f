"""``s2vc export onnx|trt``: export every network to ONNX, or build TensorRT engines from them (a plugin command
registered through the ``s2vc.commands`` entry points).

    s2vc export onnx --model weights/default --out exported/ --precision fp32
    s2vc export trt --model /data/s2vc-release --out exported/ --precision fp16 --buckets 1280x768,1920x1088

Imports stay inside the command so that ``s2vc --help`` does not pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

TARGETS = ("onnx", "trt")


def export_command(
    target: str = typer.Argument(..., help="onnx: ONNX graphs; trt: TensorRT engines (built from the ONNX graphs, needs a GPU)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint folder, release root or preset name (default: the shipped model)."),
    out: Path = typer.Option(Path("exported"), "--out", "-o", help="Output folder: ONNX graphs in OUT/onnx-PRECISION, engines in OUT/trt."),
    precision: str = typer.Option("fp32", "--precision", "-p", help="fp32 or fp16 (the entropy-parameter networks stay fp32)."),
    buckets: str = typer.Option("320x256,640x384,1280x768,1920x1088", "--buckets", help="Padded frame sizes WIDTHxHEIGHT (multiples of 64): one VAE graph and one engine profile each."),
    rates: Optional[str] = typer.Option(None, "--rates", help="Comma-separated rate points (default: all)."),
    networks: Optional[str] = typer.Option(None, "--networks", help="Comma-separated network names (default: all)."),
    max_batch: int = typer.Option(4, "--max-batch", min=1, help="TensorRT: largest batch of a profile."),
    opt_batch: int = typer.Option(1, "--opt-batch", min=1, help="TensorRT: batch the kernels are tuned for."),
) -> None:
    """Export the networks to ONNX (dynamic batch/size, state as explicit I/O) or build TensorRT engines."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from s2vc.checkpoint import load_model
    from s2vc.errors import S2VCError

    from s2vc_engines.onnx_export import check_onnx_precision
    from s2vc_engines.onnx_store import ExportStore
    from s2vc_engines.profiles import parse_buckets
    from s2vc.graphs import SPECS

    console = Console(stderr=True)

    def fail(message: str) -> None:
        console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=2)

    if target not in TARGETS:
        fail(f"unknown target {target!r}; choose onnx or trt")
    try:
        check_onnx_precision(precision)
        sizes = parse_buckets(buckets)
        names = _names(networks, SPECS)
        if target == "trt":
            from s2vc_engines.tensorrt_build import gpu_name, import_tensorrt

            import_tensorrt()  # fail before exporting anything
            gpu_name()
        with console.status("loading model"):
            m = load_model(model)
        rate_list = _rates(rates, m.num_rates)
        store = ExportStore(out / f"onnx-{precision}", m, precision)
        graphs = [(SPECS[n], r, s) for n in names for r in (rate_list if SPECS[n].per_rate else [None])
                  for s in ([None] if SPECS[n].dynamic_hw else [(h, w) for w, h in sizes])]
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[item]}"), TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(f"export onnx {precision}", total=len(graphs), item="")
            for spec, rate, size in graphs:
                bar.update(task, item=spec.graph_name(rate, size))
                store.path(spec, rate, size)
                bar.advance(task)
            if target == "trt":
                builder, built = _build_engines(store, graphs, sizes, out / "trt", max_batch, opt_batch, bar)
    except (S2VCError, ValueError, OSError) as exc:
        fail(str(exc))
    console.print(f"{len(graphs)} ONNX graphs in {store.root}")
    if target == "trt":
        console.print(f"{built} TensorRT engines in {out / 'trt'} (TensorRT {builder.trt.__version__}, {builder.gpu})")


def _build_engines(store, graphs, sizes, engine_dir: Path, max_batch: int, opt_batch: int, bar):
    """Build (or find in the cache) one engine per graph and bucket (per-size graphs: at their own size)."""
    from s2vc_engines.tensorrt_build import EngineBuilder

    builder = EngineBuilder(store, engine_dir, max_batch=max_batch, opt_batch=opt_batch)
    jobs = [(spec, rate, size, (size[1], size[0]) if size else bucket) for spec, rate, size in graphs
            for bucket in (sizes if size is None else [None])]
    task = bar.add_task(f"build trt {store.precision}", total=len(jobs), item="")
    for spec, rate, size, target in jobs:
        bar.update(task, item=f"{spec.graph_name(rate, size)} @ {target[0]}x{target[1]}")
        builder.plan(spec, rate, size, target)
        bar.advance(task)
    return builder, len(jobs)


def _names(text: str | None, specs: dict) -> list[str]:
    if not text:
        return list(specs)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown networks {unknown}; networks: {', '.join(specs)}")
    return names


def _rates(text: str | None, num_rates: int) -> list[int]:
    if not text:
        return list(range(num_rates))
    try:
        rates = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"--rates takes comma-separated integers, got {text!r}") from None
    bad = [r for r in rates if not 0 <= r < num_rates]
    if bad:
        raise ValueError(f"rate points {bad} do not exist (the model has 0..{num_rates - 1})")
    return rates
