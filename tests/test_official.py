"""The official preset with random weights: release manifests, the release layout and three frames end to end.

Builds the full architecture (≈ 1.8 G parameters, ≈ 7.5 GB of RAM in fp32), writes it in the release's file layout,
reloads it through the release loader and checks that a 64×64 I, P, P stream decodes bit-exactly with the reloaded
model. Takes about a minute on 2 cores.
"""

from __future__ import annotations

import gc
import io

import numpy as np
import pytest
import torch

from s2vc.bitstream import StreamReader, StreamWriter, UnitType
from s2vc.checkpoint import RELEASE_RATES, WEIGHT_ALIGNMENT, load_release, release_available_rates, save_release
from s2vc.codec import Codec
from s2vc.errors import CheckpointError
from s2vc.model import RateModel, S2VCModel
from s2vc.networks.vae import CodecVAE
from s2vc.pipeline import decode_stream, encode_frames
from s2vc.presets import OFFICIAL

from .conftest import MANIFESTS


def read_manifest(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    path = MANIFESTS / name
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    rows = {}
    for line in path.read_text().splitlines()[1:]:
        key, shape, dtype, _ = line.split("\t")
        rows[key] = (tuple(int(v) for v in shape.strip("[]").split(",") if v.strip()), dtype)
    return rows


def describe(module: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()}


def test_every_official_network_matches_its_release_manifest():
    with torch.device("meta"):
        rate = RateModel(OFFICIAL)
        vae = CodecVAE(OFFICIAL.vae)
    assert describe(rate.intra) == read_manifest("I_model_1.tsv")
    assert describe(rate.inter) == read_manifest("P_model_1.tsv")
    assert describe(rate.unet) == read_manifest("P_model.tsv")
    assert describe(vae) == read_manifest("SD21_vae.tsv")


def test_release_loader_names_missing_files(tmp_path):
    (tmp_path / "P_ckpts").mkdir()
    with pytest.raises(CheckpointError) as info:
        load_release(tmp_path)
    text = str(info.value)
    assert "stable-diffusion-2-1" in text and "diffusion_pytorch_model.safetensors" in text


@pytest.fixture(scope="module")
def official_release(tmp_path_factory):
    """A random official model saved as release rate point 3 (P lmbda1.8 + I onedc_lmbda2.9); and its stream.

    The model has the release's 8 rate names with only rate point 3 built, so its units are rate-3 units as they
    are (a unit's symbol check covers its rate: a relabelled unit is a corrupt one)."""
    torch.manual_seed(0)
    model = S2VCModel(OFFICIAL, [r.name for r in RELEASE_RATES], weight_hash=bytes(8), loader=lambda i: RateModel(OFFICIAL),
                      build_rates=False).eval()
    model.rate(3)
    _activate_lora(model)
    rng = np.random.default_rng(0)
    frames = [np.roll(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 4 * i, axis=0) for i in range(3)]
    codec = Codec(model)
    out = io.BytesIO()
    summary, recons = encode_frames(codec, frames, out, codec.sequence_params(64, 64, rate=3))
    root = save_release(model, tmp_path_factory.mktemp("runs"), {3: 3})
    del model, codec
    gc.collect()
    return root, out.getvalue(), recons, summary


def _activate_lora(model: torch.nn.Module) -> None:
    """PEFT starts LoRA B at zero; give it small random values so both adapters take part in the test."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1 and "lora_B" in name:
                p.normal_(0, 1e-3)


def test_official_release_layout_round_trip_and_three_frames(official_release):
    """Saved in the release layout, loaded back by the release loader, the I, P, P stream decodes bit-exactly."""
    root, data, recons, summary = official_release
    assert summary.frame_types == ["I", "P", "P"]
    assert all(p.is_file() for p in RELEASE_RATES[3].files(root).values())
    assert release_available_rates(root) == [3]
    model = load_release(root)
    assert model.resident_rates() == [3]
    # weights that sit at the file's byte offsets take other MKL/oneDNN paths and drift the decoder state
    assert all(t.data_ptr() % WEIGHT_ALIGNMENT == 0 for t in model.state_dict().values())
    codec = Codec(model)
    # the same units under the reloaded model's header (its weight hash names the release files)
    units = [u for u in StreamReader(data) if u.type in (UnitType.I, UnitType.P)]
    assert {u.rate for u in units} == {3}
    rewrapped = io.BytesIO()
    with StreamWriter(rewrapped, codec.sequence_params(64, 64, rate=3)) as writer:
        for u in units:
            writer.write_unit(u)
    _, frames = decode_stream(codec, rewrapped.getvalue())
    decoded = [f for f, _ in frames]
    assert len(decoded) == 3
    for a, b in zip(recons, decoded):
        assert np.array_equal(a, b)


def test_the_official_preset_quantises_with_the_means_as_they_are():
    """The release quantises y − μ with μ unrounded (docs/official.md); older checkpoints without the field rounded."""
    from s2vc.presets import TINY, Preset

    assert OFFICIAL.round_means is False
    assert TINY.round_means is True
    legacy = TINY.to_dict()
    del legacy["round_means"]
    assert Preset.from_dict(legacy).round_means is True


def test_the_weight_rule_depends_on_the_key_and_shape_only():
    """The rule of the official golden vectors (tests/test_official_golden.py): norms 1/0, else CRC-32-seeded randn."""
    import zlib

    from s2vc.checkpoint import RULE_GAIN, rule_state_dict, rule_tensor

    assert torch.equal(rule_tensor("down_blocks.0.resnets.0.norm1.weight", (320,)), torch.ones(320))
    assert torch.equal(rule_tensor("encoder.conv_norm_out.bias", (128,)), torch.zeros(128))
    w = rule_tensor("conv_in.weight", (320, 320, 3, 3))
    expect = torch.randn((320, 320, 3, 3), generator=torch.Generator().manual_seed(zlib.crc32(b"conv_in.weight"))) * (RULE_GAIN / 2880**0.5)
    assert torch.equal(w, expect) and torch.equal(w, rule_tensor("conv_in.weight", [320, 320, 3, 3]))
    assert abs(float(w.std()) - RULE_GAIN / 2880**0.5) < 1e-3
    bias = rule_tensor("conv_in.bias", (320,))  # biases other than norms are random too, with fan_in 1
    assert abs(float(bias.std()) - RULE_GAIN) < 0.1
    with torch.device("meta"):
        vae = CodecVAE(OFFICIAL.vae)
    state = rule_state_dict(vae)
    assert set(state) == set(vae.state_dict()) and all(v.device.type == "cpu" and v.dtype == torch.float32 for v in state.values())


def test_release_tensor_pool_moves_each_distinct_tensor_to_the_device_once():
    """Identical tensors of several rate points stay one tensor on the device (a later module.to would copy each)."""
    from s2vc.checkpoint import _TensorPool

    pool = _TensorPool("meta")
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    first = pool.share({"base.weight": a, "head.weight": a + 1})
    second = pool.share({"base.weight": a.clone(), "head.weight": a + 2})
    assert first["base.weight"] is second["base.weight"] and first["base.weight"].device.type == "meta"
    assert first["head.weight"] is not second["head.weight"]
    cpu = _TensorPool().share({"x": a})
    assert cpu["x"] is a
