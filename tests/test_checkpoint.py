"""Own checkpoint format: save → load gives the same model; broken folders give CheckpointError."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from s2vc.checkpoint import WEIGHT_ALIGNMENT, aligned, load_checkpoint, load_model, save_checkpoint
from s2vc.codec import Codec
from s2vc.errors import CheckpointError

from .golden import build_golden_model, golden_frames


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = build_golden_model()
    model._weight_hash = None  # let the checkpoint define the identity
    folder = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "micro")
    return model, folder


def test_round_trip_keeps_every_tensor(saved):
    model, folder = saved
    loaded = load_checkpoint(folder, verify=True)
    assert loaded.rate_names == model.rate_names and loaded.preset == model.preset
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((folder / "config.json").read_text())
    assert loaded.weight_hash == bytes.fromhex(config["sha256"])[:8]


def test_loaded_model_codes_like_the_original(saved):
    model, folder = saved
    loaded = load_checkpoint(folder)
    frame = golden_frames()[0]
    u1, _, r1 = Codec(model).encode_frame(Codec(model).new_state(64, 64), frame)
    u2, _, r2 = Codec(loaded).encode_frame(Codec(loaded).new_state(64, 64), frame)
    assert u1.payload == u2.payload and np.array_equal(r1, r2)


def test_load_model_resolves_folders_and_presets(saved):
    _, folder = saved
    assert load_model(str(folder)).model_id == "golden-micro"
    assert load_model("tiny").preset.name == "tiny"
    with pytest.raises(CheckpointError, match="not found"):
        load_model("no/such/model")


def test_missing_and_damaged_files(saved, tmp_path):
    _, folder = saved
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(broken)
    config = json.loads((folder / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config))
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (broken / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(broken, verify=True)
    config["preset"]["inter"]["ch"] = 24  # weights no longer fit the architecture
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_checkpoint(broken)


def test_half_precision_storage_loads_as_float32(saved, tmp_path):
    model, _ = saved
    folder = save_checkpoint(model, tmp_path / "fp16", storage_dtype="float16")
    full = (tmp_path / "fp32")
    save_checkpoint(model, full)
    assert (folder / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded = load_checkpoint(folder).state_dict()
    for k, v in model.state_dict().items():
        w = loaded[k]
        assert w.dtype == v.dtype
        if v.is_floating_point():
            assert torch.equal(w, v.half().float())


def test_weights_read_at_file_offsets_are_realigned():
    """A tensor at an odd byte offset (as safetensors hands out) is copied to an aligned buffer; others are kept."""
    base = torch.arange(17, dtype=torch.float32)
    offset = base[1:]
    assert offset.data_ptr() % WEIGHT_ALIGNMENT != 0
    moved = aligned(offset)
    assert moved.data_ptr() % WEIGHT_ALIGNMENT == 0 and torch.equal(moved, offset)
    assert aligned(base) is base


def test_a_checkpoint_carries_its_reset_interval(saved, tmp_path):
    """The interval the weights were tuned for becomes the codec's default; an explicit one still wins."""
    model, folder = saved
    assert load_checkpoint(folder).reset_interval is None and Codec(load_checkpoint(folder)).reset_interval == 32
    model.reset_interval = 8
    try:
        tuned = save_checkpoint(model, tmp_path / "tuned")
    finally:
        model.reset_interval = None
    loaded = load_checkpoint(tuned)
    assert loaded.reset_interval == 8
    assert Codec(loaded).reset_interval == 8 and Codec(loaded, reset_interval=32).reset_interval == 32
    assert Codec(loaded).sequence_params(64, 64).reset_interval == 8
    config = json.loads((tuned / "config.json").read_text())
    (tuned / "config.json").write_text(json.dumps({**config, "reset_interval": 0}))
    with pytest.raises(CheckpointError, match="reset_interval"):
        load_checkpoint(tuned)
