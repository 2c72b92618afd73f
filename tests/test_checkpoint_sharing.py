"""Rate points that share networks are stored once in a checkpoint (aliases in the safetensors metadata)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from s2vc.checkpoint import ALIASES_KEY, CheckpointError, load_checkpoint, save_checkpoint
from s2vc.model import build_model
from tests.golden import MICRO


def _model(share: bool):
    model = build_model(MICRO, num_rates=3, seed=1)
    if share:  # rates 1 and 2 keep rate 0's intra codec and U-Net; only the inter codecs differ
        for r in (1, 2):
            model.rate(r).intra.load_state_dict(model.rate(0).intra.state_dict())
            model.rate(r).unet.load_state_dict(model.rate(0).unet.state_dict())
    return model


def test_shared_networks_are_stored_once_and_load_back_equal(tmp_path):
    shared, separate = _model(True), _model(False)
    save_checkpoint(shared, tmp_path / "shared", storage_dtype="float16")
    save_checkpoint(separate, tmp_path / "separate", storage_dtype="float16")
    size_shared = (tmp_path / "shared" / "model.safetensors").stat().st_size
    size_separate = (tmp_path / "separate" / "model.safetensors").stat().st_size
    assert size_shared < 0.75 * size_separate
    with safe_open(str(tmp_path / "shared" / "model.safetensors"), framework="pt") as f:
        aliases = json.loads(f.metadata()[ALIASES_KEY])
    assert any(k.startswith("rates.2.unet.") and v.startswith("rates.0.unet.") for k, v in aliases.items())
    loaded = load_checkpoint(tmp_path / "shared")
    for r in range(3):
        want = {k: v.half().float() for k, v in shared.rate(r).state_dict().items()}
        got = loaded.rate(r).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want), f"rate point {r} differs after the round trip"


def test_alias_to_a_missing_tensor_is_a_clear_error(tmp_path):
    folder = save_checkpoint(_model(True), tmp_path / "m")
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    aliases = json.loads(metadata[ALIASES_KEY])
    target = next(iter(aliases.values()))
    del tensors[target]
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="aliases point at tensors"):
        load_checkpoint(folder)


def test_export_ships_a_chosen_subset_of_rate_points_in_order(tmp_path):
    """``training.export --rates 2,0``: the installed model holds those rate points, renumbered 0, 1, bit-equal."""
    from s2vc_training.export import main as export

    model = _model(False)
    save_checkpoint(model, tmp_path / "run", storage_dtype="float32")
    export([str(tmp_path / "run"), str(tmp_path / "shipped"), "--rates", "2,0", "--dtype", "float32", "--reset-interval", "16"])
    shipped = load_checkpoint(tmp_path / "shipped")
    assert shipped.num_rates == 2 and shipped.reset_interval == 16
    assert shipped.rate_names == [model.rate_names[2], model.rate_names[0]]
    for new, old in enumerate((2, 0)):
        for (k, a), (_, b) in zip(shipped.rate(new).state_dict().items(), model.rate(old).state_dict().items()):
            assert torch.equal(a, b), k
    with pytest.raises(SystemExit):
        export([str(tmp_path / "run"), str(tmp_path / "bad"), "--rates", "0,3"])
    assert not (tmp_path / "bad").exists()
