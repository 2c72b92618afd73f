"""Compact training state: what a later run needs to carry a training run on, small enough to keep in git.

A machine that trained may not be there next time (a GPU slot, a session's VM), so a run can leave its state as
a folder of small files instead of ``checkpoints/last.pt`` (which holds fp32 weights, both AdamW moments and the
discriminator, ≈ 4× the model):

* ``run.json`` — the :class:`~training.trainer.TrainConfig` of the run, the step it reached, whether it finished,
  and the preset, rate names and reset interval of the model;
* ``vae.safetensors`` and ``rate<i>.safetensors`` — the weights in float16, one file per part so that no file
  exceeds a few MB (a GPU slot brings back files of at most 16 MiB). A rate point whose tensors equal another's
  is written as a reference to it (``rate<i>.json``), not as a copy, and one that is still exactly the seeded
  random initialisation (rate points no stage has trained yet) as that seed.

``s2vc train --continue-from DIR`` resumes it: same configuration, same step (so the learning-rate schedule and the
data order go on where they were), float16 weights cast back to float32. The optimiser's moments are not kept; the
resumed run warms its learning rate up again over a few steps.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from s2vc.model import RateModel, S2VCModel, build_model
from s2vc.presets import Preset

RUN_FILE = "run.json"
COMPACT_FORMAT = "s2vc-train-state"
COMPACT_VERSION = 1


def is_compact_state(folder: str | Path) -> bool:
    return (Path(folder) / RUN_FILE).is_file()


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()).contiguous() for k, v in state.items()}


def save_compact(model: S2VCModel, config: dict[str, Any], step: int, folder: str | Path, *, finished: bool) -> Path:
    """Write the compact state of a run (atomically: a new folder replaces the old one)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_half(model.vae.state_dict()), str(tmp / "vae.safetensors"))
    written: list[tuple[int, dict[str, torch.Tensor]]] = []
    seed = config.get("seed")
    fresh = _seeded(model.preset, model.num_rates, seed) if isinstance(seed, int) else None
    for i in range(model.num_rates):
        state = _half(model.rate(i).state_dict())
        same = next((j for j, other in written if _equal(other, state)), None)
        if same is not None:
            (tmp / f"rate{i}.json").write_text(json.dumps({"same_as": same}) + "\n")
        elif fresh is not None and _equal(_half(fresh.rate(i).state_dict()), state):
            (tmp / f"rate{i}.json").write_text(json.dumps({"seeded": seed}) + "\n")
        else:
            save_file(state, str(tmp / f"rate{i}.safetensors"))
            written.append((i, state))
    run = {
        "format": COMPACT_FORMAT, "format_version": COMPACT_VERSION, "step": int(step), "finished": bool(finished),
        "config": config, "preset": model.preset.to_dict(), "rate_names": model.rate_names,
        "model_id": model.model_id, "reset_interval": model.reset_interval,
    }
    (tmp / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _seeded(preset: Preset, num_rates: int, seed: int) -> S2VCModel:
    """The random initialisation :func:`s2vc.model.build_model` gives (the RNG state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        return build_model(preset, num_rates=num_rates, seed=seed)


def read_run(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / RUN_FILE
    try:
        run = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable training state ({exc})") from exc
    if run.get("format") != COMPACT_FORMAT or run.get("format_version") != COMPACT_VERSION:
        raise ValueError(f"{path}: not an s2vc training state (format {run.get('format')!r} v{run.get('format_version')})")
    return run


def load_compact(folder: str | Path, device: str | torch.device = "cpu") -> tuple[S2VCModel, dict[str, Any]]:
    """The model (float32) and the run record of a compact state folder."""
    folder = Path(folder)
    run = read_run(folder)
    preset = Preset.from_dict(run["preset"])
    model = S2VCModel(preset, list(run["rate_names"]), model_id=run.get("model_id"), build_rates=True)
    model.vae.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(str(folder / "vae.safetensors")).items()})
    seeded: dict[int, S2VCModel] = {}
    for i in range(model.num_rates):
        ref = folder / f"rate{i}.json"
        record = json.loads(ref.read_text()) if ref.is_file() else {"same_as": i}
        if "seeded" in record:
            seed = int(record["seeded"])
            fresh = seeded.setdefault(seed, _seeded(preset, model.num_rates, seed))
            model.rate(i).load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in fresh.rate(i).state_dict().items()})
            continue
        source = record["same_as"]
        if not 0 <= int(source) <= i:
            raise ValueError(f"{ref}: rate point {i} refers to rate point {source}, which is not written before it")
        tensors = load_file(str(folder / f"rate{int(source)}.safetensors"))
        module: RateModel = model.rate(i)
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    model.reset_interval = run.get("reset_interval")
    return model.to(device), run
