"""Install a trained checkpoint as a shipped model: ``python -m training.export RUN/model weights/default``.

Re-saves the checkpoint with half-precision storage (float32 compute after loading) and a note of where it
came from; prints the size, which must stay within the shipped-model budget.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from s2vc.checkpoint import load_checkpoint, save_checkpoint
from s2vc.model import S2VCModel


def select_rates(model: S2VCModel, rates: list[int]) -> S2VCModel:
    """A model with only the rate points ``rates`` of ``model`` (in that order: the first becomes rate point 0)."""
    if not rates or len(set(rates)) != len(rates) or not all(0 <= r < model.num_rates for r in rates):
        raise ValueError(f"expected distinct rate points among 0..{model.num_rates - 1}, got {rates}")
    chosen = S2VCModel(model.preset, [model.rate_names[r] for r in rates], model_id=model.model_id, build_rates=False)
    chosen.vae = model.vae
    for new, old in enumerate(rates):
        chosen.rates[str(new)] = model.rate(old)
    chosen.reset_interval = model.reset_interval
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a trained s2vc checkpoint folder (RUN/model)")
    parser.add_argument("dest", type=Path, help="where to install it (weights/default)")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--max-mb", type=float, default=20.0, help="refuse to install a model larger than this (MB)")
    parser.add_argument("--rates", default=None,
                        help="comma-separated rate points of the source to ship, fewest bits first (default: all); they become 0, 1, ...")
    parser.add_argument("--reset-interval", type=int, default=None,
                        help="record the P-frames between context re-anchors these weights were tuned for (the codec's default for this model)")
    args = parser.parse_args(argv)
    if args.reset_interval is not None and args.reset_interval < 1:
        parser.error("--reset-interval must be at least 1")
    model = load_checkpoint(args.source)
    if args.rates is not None:
        try:
            model = select_rates(model, [int(r) for r in args.rates.split(",")])
        except ValueError as exc:
            parser.error(f"--rates: {exc}")
    if args.reset_interval is not None:
        model.reset_interval = args.reset_interval
    tmp = args.dest.with_name(args.dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tmp, storage_dtype=args.dtype, extra={"source": str(args.source), "trained": True})
    size = sum(p.stat().st_size for p in tmp.iterdir()) / 1e6
    if size > args.max_mb:
        shutil.rmtree(tmp)
        raise SystemExit(f"model is {size:.1f} MB, over the {args.max_mb} MB budget")
    shutil.rmtree(args.dest, ignore_errors=True)
    tmp.rename(args.dest)
    print(f"installed {args.dest} ({size:.1f} MB, {model.num_rates} rate points, {args.dtype} storage)")


if __name__ == "__main__":
    main()
