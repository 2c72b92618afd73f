"""Train the shipped default by its recipe, in slots of any length, on any machine.

A recipe is a list of stages (``training/recipes/*.json``); each stage is one ``s2vc train`` run (a
:class:`~training.trainer.TrainConfig` without ``out`` and ``init``). Run folders go under ``--out``: stage ``name``
trains in ``OUT/name`` from the previous stage's model. Run the command again, here or on another machine, and it
goes on where it stopped: a finished stage is skipped, an unfinished one resumes from its ``checkpoints/last.pt``
(exactly) or its compact ``state/`` (float16 weights, same step).

``--minutes`` bounds the wall time of one invocation (a GPU slot of 10 minutes: ``--minutes 8.5``); every stage
it touches checkpoints before the time is up. ``--kit DIR`` seeds ``OUT`` from a kit, and ``--write-kit DIR``
writes one: the recipe's progress and the compact state of the last stage touched, a few MB, small enough to
commit (``training/state/``), so a run can go on on a machine that has none of this one's files::

    python -m training.recipe --out runs/tiny-v2 --corpus runs/corpus --minutes 170              # a CPU session
    python -m training.recipe --out runs/tiny-v2 --corpus corpus --device cuda --minutes 8.5 \\
        --kit training/state/tiny-v2 --write-kit $OUT/kit                                            # a GPU slot
    python -m training.recipe --out runs/tiny-v2 --status                                          # where it stands
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .compact import is_compact_state, load_compact, read_run, save_compact

RECIPES = Path(__file__).with_name("recipes")
PROGRESS = "recipe.json"


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file: ``{"name", "preset", "stages": [{"name", "init_from"?, ...TrainConfig fields}]}``."""
    path = Path(path)
    if not path.suffix:
        path = RECIPES / f"{path}.json"
    recipe = json.loads(path.read_text())
    names = [s["name"] for s in recipe["stages"]]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: stage names must be unique")
    for i, stage in enumerate(recipe["stages"]):
        source = stage.get("init_from")
        if source is not None and source not in names[:i]:
            raise ValueError(f"{path}: stage {stage['name']!r} starts from {source!r}, which is not an earlier stage")
    return recipe


def stage_config(recipe: dict[str, Any], index: int, out: Path, device: str) -> dict[str, Any]:
    from .trainer import TrainConfig

    stage = dict(recipe["stages"][index])
    name = stage.pop("name")
    source = stage.pop("init_from", recipe["stages"][index - 1]["name"] if index else None)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(stage) - fields
    if unknown:
        raise ValueError(f"stage {name!r}: unknown training options {sorted(unknown)}")
    init = str(out / source / "model") if source else stage.pop("init", None)
    return {"preset": recipe.get("preset", "tiny"), **stage, "out": str(out / name), "init": init, "device": device}


def stage_done(run: Path, steps: int | None = None) -> bool:
    """Whether the stage's run finished (and reached ``steps``: raising a stage's steps in the recipe reopens it)."""
    state = run / "state"
    if not (is_compact_state(state) and (run / "model" / "config.json").is_file()):
        return False
    record = read_run(state)
    return bool(record.get("finished")) and (steps is None or int(record["step"]) >= steps)


def progress(recipe: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    rows = []
    for stage in recipe["stages"]:
        run = out / stage["name"]
        status = json.loads((run / "status.json").read_text()) if (run / "status.json").is_file() else {}
        rows.append({"stage": stage["name"], "done": stage_done(run, stage.get("steps")), "step": status.get("step", 0),
                     "steps": stage.get("steps"), "metrics": status.get("metrics", {})})
    return rows


def seed_from_kit(kit: Path, out: Path) -> None:
    """Lay a kit into ``out``: finished stages get their marker, the kit's state goes to its stage's run folder."""
    record = json.loads((kit / PROGRESS).read_text())
    out.mkdir(parents=True, exist_ok=True)
    stage = record["state_stage"]
    run = out / stage
    if (run / "checkpoints" / "last.pt").is_file() or stage_done(run, record.get("state_step")):
        return  # this machine already has the stage (exactly): the kit adds nothing
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    shutil.copytree(kit / "state", run / "state")
    if record.get("state_finished"):  # the next stage starts from this one's model
        from s2vc.checkpoint import save_checkpoint

        from .compact import load_compact

        model, _ = load_compact(run / "state")
        save_checkpoint(model, run / "model", storage_dtype="float16")
    for name in record["done"]:
        if name != stage and not (out / name).exists():
            (out / name).mkdir(parents=True)
            (out / name / "DONE-ELSEWHERE").write_text("finished on another machine; its successor's state is in the kit\n")


def write_kit(recipe: dict[str, Any], out: Path, kit: Path) -> Path | None:
    """The kit of the last stage touched: progress + its compact state."""
    touched = [s["name"] for s in recipe["stages"] if is_compact_state(out / s["name"] / "state")]
    if not touched:
        return None
    last = touched[-1]
    done = [s["name"] for s in recipe["stages"] if stage_done(out / s["name"], s.get("steps")) or (out / s["name"] / "DONE-ELSEWHERE").is_file()]
    tmp = kit.with_name(kit.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model, run = load_compact(out / last / "state")  # re-saved: untrained rate points become their seed
    save_compact(model, run["config"], run["step"], tmp / "state", finished=bool(run["finished"]))
    record = {"recipe": recipe["name"], "done": done, "state_stage": last, "state_finished": last in done,
              "state_step": read_run(out / last / "state")["step"], "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (tmp / PROGRESS).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(kit, ignore_errors=True)
    tmp.rename(kit)
    return kit


def run_recipe(recipe: dict[str, Any], out: Path, corpus: Path, *, device: str = "cpu", minutes: float | None = None,
               log=print) -> bool:
    """Train every unfinished stage in order within ``minutes``. Returns whether the whole recipe is done."""
    from .data import ClipDataset
    from .loop import batch_iterator
    from .trainer import TrainConfig, Trainer

    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    for index, stage in enumerate(recipe["stages"]):
        run = out / stage["name"]
        if stage_done(run, stage.get("steps")) or (run / "DONE-ELSEWHERE").is_file():
            continue
        left = None if deadline is None else (deadline - time.monotonic()) / 60
        if left is not None and left < 0.5:
            log(f"time is up before stage {stage['name']}")
            return False
        cfg_dict = stage_config(recipe, index, out, device)
        state = run / "state"
        resumable = (run / "checkpoints" / "last.pt").is_file()
        if not resumable and is_compact_state(state):  # carried from another machine: go on at its step
            record = read_run(state)
            cfg_dict.update(init=str(state.with_name("state-start")), start_step=int(record["step"]), rewarm=20,
                            init_rate_from=None, rescale_x0=False, reinit_vae=False)
            shutil.rmtree(state.with_name("state-start"), ignore_errors=True)
            shutil.copytree(state, state.with_name("state-start"))
        cfg = TrainConfig(**{**cfg_dict, "max_minutes": left})
        cfg.validate()
        log(f"stage {stage['name']}: {cfg.stage} r{cfg.rate}, {cfg.steps} steps" + (f", {left:.1f} min left" if left else ""))
        dataset = ClipDataset(corpus, frames=cfg.frames, crop=cfg.crop, seed=cfg.seed)
        trainer = Trainer(cfg, batch_iterator(dataset, cfg.batch, cfg.seed))
        if resumable and trainer.resume():
            log(f"  resumed at step {trainer.step}")
        started = trainer.step

        def report(step: int, metrics: dict[str, float]) -> None:
            if step % max(1, cfg.log_every) == 0:
                log(f"  step {step}/{cfg.steps} loss {metrics['loss']:.4f} bpp {metrics['bpp']:.4f} psnr {metrics['psnr']:.2f}")

        trainer.fit(report)
        log(f"  {trainer.step - started} steps, now at {trainer.step}/{cfg.steps}")
        if trainer.stopped_early:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="tiny-v2", help="a recipe name in training/recipes/ or a JSON file")
    parser.add_argument("--out", type=Path, required=True, help="folder of the stage run folders")
    parser.add_argument("--corpus", type=Path, help="training corpus (python -m training.data --out DIR)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--minutes", type=float, help="stop cleanly after this much wall time (resume by running again)")
    parser.add_argument("--kit", type=Path, help="seed --out from a kit (its progress and compact state)")
    parser.add_argument("--write-kit", type=Path, help="afterwards, write the kit of the last stage touched here")
    parser.add_argument("--status", action="store_true", help="print where the recipe stands and exit")
    args = parser.parse_args(argv)
    recipe = load_recipe(args.recipe)
    if args.kit:
        seed_from_kit(args.kit, args.out)
    if args.status:
        for row in progress(recipe, args.out):
            mark = "done" if row["done"] else f"{row['step']}/{row['steps']}"
            psnr = row["metrics"].get("psnr")
            print(f"{row['stage']:>16}  {mark:>12}" + (f"  psnr {psnr:.2f}" if psnr else ""))
        return 0
    if args.corpus is None:
        parser.error("--corpus is required to train")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU")
    try:
        done = run_recipe(recipe, args.out, args.corpus, device=args.device, minutes=args.minutes,
                          log=lambda m: print(m, flush=True))
    finally:
        if args.write_kit:
            kit = write_kit(recipe, args.out, args.write_kit)
            print(f"kit written to {kit}" if kit else "nothing trained yet: no kit written", flush=True)
    print("recipe finished" if done else "recipe not finished: run the same command again to go on", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
