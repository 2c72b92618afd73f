"""s2vc.graphs, engines/ (ONNX export, store, profiles, TensorRT build) and export/: specs, ONNX graphs against torch in onnxruntime (CPU), profiles, TensorRT cache keys, the CLI."""

from __future__ import annotations

import importlib.util
import json

import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from s2vc_engines.onnx_export import export_onnx
from s2vc_engines.onnx_store import ExportStore
from s2vc_engines.profiles import BUCKETS, bucket_for, parse_buckets, profile_for
from s2vc_engines.tensorrt_build import EngineCache, EngineKey, TensorRTMissingError, build_or_load, import_tensorrt
from s2vc.graphs import SPECS
from s2vc.cli import app
from s2vc.errors import ModelMismatchError
from s2vc.model import build_model
from s2vc.presets import TINY

from .engine_fixtures import lora_model, onnx_store, one_thread  # noqa: F401  (fixtures)

# onnxruntime vs torch, fp32: largest |difference| over the largest |torch value| of each output. Measured
# 1e-7 .. 2e-6 (summation order of the convolutions); 1e-4 leaves room for other CPUs' kernels.
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2  # fp16 graphs (measured ≈ 1e-3)
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
pytestmark = pytest.mark.usefixtures("one_thread")


def relative_error(got, want) -> float:
    return max(float((torch.as_tensor(g) - w).abs().max() / w.abs().max().clamp_min(1e-6)) for g, w in zip(got, want))


def run_graph(path, spec, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: x.numpy() for name, x in zip(spec.inputs, inputs)})


@pytest.mark.parametrize("name", list(SPECS))
def test_every_network_matches_torch_in_onnxruntime(name, lora_model, onnx_store):
    """Traced at batch 2 and 128x128; run at other batches and sizes (the dynamic axes), against the torch network."""
    spec = SPECS[name]
    cases = [(1, 128, 192), (3, 64, 128)] if spec.dynamic_hw else [(1, 128, 192), (3, 128, 192)]
    for batch, h, w in cases:
        path = onnx_store.path(spec, 0, (h, w))
        inputs = spec.sample_inputs(TINY, batch, h, w, seed=batch)
        with torch.inference_mode():
            want = spec.call(spec.owner(lora_model, 0), *inputs)
        got = run_graph(path, spec, inputs)
        assert [g.shape for g in got] == [tuple(t.shape) for t in want]
        assert relative_error(got, want) < FP32_TOLERANCE, (name, batch, h, w)


def test_graph_io_axes_and_metadata(lora_model, onnx_store):
    for name in ("unet_pframe", "vae_decoder", "inter_context"):
        spec = SPECS[name]
        graph = onnx.load(str(onnx_store.path(spec, 0, (128, 192))), load_external_data=False)
        assert [i.name for i in graph.graph.input] == list(spec.inputs)
        assert [o.name for o in graph.graph.output] == list(spec.outputs)
        dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
        assert dims[0] == "batch"
        if spec.dynamic_hw:
            assert dims[2:] == ["height_8", "width_8"]
        else:
            assert dims[2:] == [16, 24]  # the VAE is exported per padded frame size (its attention tiles by size)
        props = {p.key: p.value for p in graph.metadata_props}
        assert props["s2vc.network"] == name and props["s2vc.weight_hash"] == lora_model.weight_hash.hex()


def test_state_tensors_are_explicit_io():
    assert SPECS["unet_pframe"].inputs[2:] == ("prev_feat0", "prev_feat1", "prev_feat2")
    assert SPECS["unet_iframe"].inputs == ("f_pix", "tokens")  # the I-frame U-Net has no temporal fusion inputs
    assert SPECS["unet_iframe"].outputs[2:] == ("feat0", "feat1", "feat2")
    assert SPECS["inter_context"].inputs == ("ref_feature",) and SPECS["inter_context_reset"].inputs == ("ref_frame",)
    assert "feature" in SPECS["inter_decoder"].outputs
    assert {n for n, s in SPECS.items() if s.entropy_params} == {
        "intra_hyper_decoder", "intra_spatial_prior_1", "intra_spatial_prior_2", "intra_spatial_prior_3", "inter_prior", "inter_spatial_prior"}


def test_merged_adapters_match_peft_and_differ(lora_model):
    unet = lora_model.rate(0).unet
    spec = SPECS["unet_iframe"]
    f_pix, tokens = spec.sample_inputs(TINY, 1, 128, 128)
    merged = {a: unet.with_adapter(a).merged() for a in ("iframe", "pframe")}
    with torch.no_grad():
        unet.merged_inference = False  # the PEFT path (base + B·A), not the model's own merged fast path
        try:
            peft = {a: unet.forward_eps(f_pix, tokens, None, a)[0] for a in merged}
        finally:
            unet.merged_inference = True
        plain = {a: m.forward_eps(f_pix, tokens)[0] for a, m in merged.items()}
    for a in merged:
        torch.testing.assert_close(plain[a], peft[a], rtol=1e-5, atol=1e-5)
    assert (plain["iframe"] - plain["pframe"]).abs().max() > 1e-3
    assert not any("lora" in k for k in merged["iframe"].state_dict())
    assert any("lora" in k for k in unet.state_dict())  # the source is untouched


def test_fp16_graphs_keep_the_entropy_path_fp32(lora_model, tmp_path):
    store = ExportStore(tmp_path, lora_model, "fp16")
    for name, want_weights in (("inter_decoder", {"FLOAT16"}), ("inter_prior", {"FLOAT"})):
        spec = SPECS[name]
        path = store.path(spec, 0)
        graph = onnx.load(str(path))
        weights = {onnx.TensorProto.DataType.Name(t.data_type) for t in graph.graph.initializer if t.dims}
        io = {onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in [*graph.graph.input, *graph.graph.output]}
        assert weights == want_weights and io == {"FLOAT"}, name
        inputs = spec.sample_inputs(TINY, 1, 128, 192)
        with torch.inference_mode():
            want = spec.call(spec.owner(lora_model, 0), *inputs)
        error = relative_error(run_graph(path, spec, inputs), want)
        assert error < (FP16_TOLERANCE if name == "inter_decoder" else FP32_TOLERANCE)


def test_bf16_is_refused_for_onnx(lora_model, tmp_path):
    with pytest.raises(ValueError, match="bfloat16"):
        ExportStore(tmp_path, lora_model, "bf16")


def test_external_data_for_large_graphs(lora_model, tmp_path):
    spec = SPECS["inter_decoder"]
    path = export_onnx(spec, lora_model, 0, tmp_path / "g.onnx", external_threshold=0)
    data = tmp_path / "g.onnx.data"
    assert data.is_file() and data.stat().st_size > path.stat().st_size  # the weights live outside the graph
    onnx.checker.check_model(str(path))
    inputs = spec.sample_inputs(TINY, 1, 64, 64)
    with torch.inference_mode():
        want = spec.call(spec.owner(lora_model, 0), *inputs)
    assert relative_error(run_graph(path, spec, inputs), want) < FP32_TOLERANCE


def test_store_refuses_other_weights_and_precision(lora_model, tmp_path):
    ExportStore(tmp_path, lora_model, "fp32")
    other = build_model(TINY, num_rates=1, seed=1)
    with pytest.raises(ModelMismatchError, match="weight_hash"):
        ExportStore(tmp_path, other, "fp32")
    with pytest.raises(ModelMismatchError, match="precision"):
        ExportStore(tmp_path, lora_model, "fp16")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["weight_hash"] == lora_model.weight_hash.hex()


def test_same_weights_under_another_preset_get_their_own_cache(lora_model, tmp_path):
    """A preset that differs only in a coding tool (same weights, same hash) is refused by a store with its field
    named, and the default cache keeps the two apart."""
    import dataclasses
    import types

    from s2vc_engines.onnx_store import default_store_dir

    other = types.SimpleNamespace(model_id=lora_model.model_id, weight_hash=lora_model.weight_hash,
                                  preset=dataclasses.replace(lora_model.preset, latent_offset_step=0.25))
    ExportStore(tmp_path, lora_model, "fp32")
    with pytest.raises(ModelMismatchError, match="latent_offset_step"):
        ExportStore(tmp_path, other, "fp32")
    assert default_store_dir(other, "fp32") != default_store_dir(lora_model, "fp32")
    assert default_store_dir(lora_model, "fp32") == default_store_dir(lora_model, "fp32")


# --------------------------------------------------------------------------------------------------- profiles
def test_buckets_and_profiles():
    assert parse_buckets("640x384, 320x256") == ((320, 256), (640, 384))
    for bad in ("320x250", "abc", "", "0x64"):
        with pytest.raises(ValueError):
            parse_buckets(bad)
    assert bucket_for(256, 320) == (320, 256)  # a 320x240 frame pads to 320x256
    assert bucket_for(320, 384) == (640, 384)
    assert bucket_for(1088, 1920) == (1920, 1088)
    with pytest.raises(ValueError, match="fits no bucket"):
        bucket_for(2176, 3840)
    assert [b for b in BUCKETS] == [(320, 256), (640, 384), (1280, 768), (1920, 1088)]

    profile = dict((n, (lo, opt, hi)) for n, lo, opt, hi in profile_for(SPECS["unet_pframe"], TINY, (1280, 768), max_batch=4, opt_batch=2).shapes)
    c, d, f2 = TINY.unet.in_channels, TINY.unet.cross_attention_dim, TINY.unet.block_out_channels[2]
    assert profile["f_pix"] == ((1, c, 8, 8), (2, c, 96, 160), (4, c, 96, 160))
    assert profile["tokens"] == ((1, 1, d), (2, 240, d), (4, 240, d))
    assert profile["prev_feat2"][2] == (4, f2, 12, 20)
    vae = dict((n, (lo, opt, hi)) for n, lo, opt, hi in profile_for(SPECS["vae_decoder"], TINY, (320, 256)).shapes)
    lat = TINY.vae.latent_channels
    assert vae["latent"] == ((1, lat, 32, 40), (1, lat, 32, 40), (4, lat, 32, 40))  # per-size graph: only the batch varies
    with pytest.raises(ValueError):
        profile_for(SPECS["vae_decoder"], TINY, (320, 256), max_batch=1, opt_batch=2)


# --------------------------------------------------------------------------------------------------- TensorRT cache
def _key(**changes):
    fields = dict(weight_hash=b"\x01" * 8, graph="unet_pframe.r0", gpu="NVIDIA H100 80GB HBM3", tensorrt_version="11.4.0",
                  precision="fp16", profile=profile_for(SPECS["unet_pframe"], TINY, (1280, 768)))
    fields.update(changes)
    return EngineKey.make(fields["weight_hash"], fields["graph"], fields["gpu"], fields["tensorrt_version"], fields["precision"], fields["profile"])


def test_engine_key_changes_with_every_input():
    base = _key()
    assert _key().digest() == base.digest()  # deterministic
    variants = [
        _key(weight_hash=b"\x02" * 8), _key(precision="fp32"), _key(gpu="NVIDIA H200"), _key(tensorrt_version="11.5.0"),
        _key(graph="unet_pframe.r1"), _key(profile=profile_for(SPECS["unet_pframe"], TINY, (1920, 1088))),
        _key(profile=profile_for(SPECS["unet_pframe"], TINY, (1280, 768), max_batch=8)),
    ]
    digests = {v.digest() for v in variants}
    assert base.digest() not in digests and len(digests) == len(variants)
    assert base.stem().startswith("unet_pframe.r0-")


def test_engine_cache_loads_only_matching_intact_plans(tmp_path):
    cache, key = EngineCache(tmp_path), _key()
    assert cache.load(key) is None
    path = cache.store(key, b"plan bytes")
    assert cache.load(key) == b"plan bytes"
    plan, built = build_or_load(cache, key, tmp_path / "unused.onnx", key.profile)  # a cache hit builds nothing
    assert (plan, built) == (b"plan bytes", False)

    path.write_bytes(b"tampered")  # corrupt plan: its hash no longer matches the sidecar
    assert cache.load(key) is None
    cache.store(key, b"plan bytes")
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["key"]["tensorrt"] = "10.0.0"  # foreign: built by another TensorRT under this file name
    sidecar.write_text(json.dumps(record))
    assert cache.load(key) is None
    sidecar.unlink()  # a plan without its sidecar is never loaded
    assert cache.load(key) is None


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here: the missing-runtime path cannot be exercised")
def test_stale_engine_is_rebuilt_not_loaded_and_the_guard_says_what_to_install(tmp_path):
    cache, key = EngineCache(tmp_path), _key()
    cache.store(_key(tensorrt_version="10.0.0"), b"old plan")
    with pytest.raises(TensorRTMissingError, match=r"pip install 's2vc\[gpu\]'"):
        build_or_load(cache, key, tmp_path / "g.onnx", key.profile)  # goes to build (needs TensorRT), never loads
    with pytest.raises(TensorRTMissingError, match="tensorrt"):
        import_tensorrt()


@pytest.mark.skipif(not (HAS_TENSORRT and torch.cuda.is_available()), reason="needs tensorrt (pip install 's2vc[gpu]') and a CUDA GPU")
def test_tensorrt_build_and_cache(lora_model, tmp_path):
    from s2vc_engines.tensorrt_build import EngineBuilder

    store = ExportStore(tmp_path / "onnx", lora_model)
    builder = EngineBuilder(store, tmp_path / "trt")
    spec = SPECS["inter_prior"]
    plan = builder.plan(spec, 0, None, (320, 256))
    assert plan and builder.plan(spec, 0, None, (320, 256)) == plan  # second time from the cache
    assert builder.timing_cache.is_file()


# --------------------------------------------------------------------------------------------------- CLI
def test_export_cli_writes_graphs(tmp_path):
    result = CliRunner().invoke(app, ["export", "onnx", "--model", "tiny", "--out", str(tmp_path), "--networks",
                                      "inter_prior,vae_decoder", "--rates", "1", "--buckets", "320x256,128x128"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "onnx-fp32").glob("*.onnx"))
    assert names == ["inter_prior.r1.onnx", "vae_decoder.128x128.onnx", "vae_decoder.320x256.onnx"]


@pytest.mark.parametrize("args, message", [
    (["export", "mlir"], "unknown target"),
    (["export", "onnx", "--precision", "bf16"], "bfloat16"),
    (["export", "onnx", "--networks", "unet"], "unknown networks"),
    (["export", "onnx", "--model", "tiny", "--rates", "7"], "do not exist"),
    (["export", "onnx", "--buckets", "300x200"], "multiples of 64"),
])
def test_export_cli_errors(args, message, tmp_path):
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.skipif(HAS_TENSORRT and torch.cuda.is_available(), reason="TensorRT and a GPU are present")
def test_export_trt_without_tensorrt_says_what_to_install(tmp_path):
    result = CliRunner().invoke(app, ["export", "trt", "--model", "tiny", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "pip install 's2vc[gpu]'" in result.output
    assert not (tmp_path / "onnx-fp32").exists()  # failed before exporting anything

