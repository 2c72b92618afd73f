"""engines/: the Engine interface, the torch engine's options, the onnxruntime engine in the codec, and what a
decoder on another backend does with a stream (per network), the TensorRT engine where it can run."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from s2vc_engines import EngineUnavailableError, engine_names, load_engine
from s2vc_engines.base import Engine
from s2vc.graphs import SPECS
from s2vc.codec import Codec
from s2vc.errors import StateMismatchError
from s2vc.protocol import InterNetwork, IntraNetwork, ModelNetworks, VAENetwork

from .engine_fixtures import HEIGHT, WIDTH, lora_model, moving_clip, one_thread, onnx_store  # noqa: F401  (fixtures)

FRAMES = 5  # I, reset P, P, P, P
PIXEL_TOLERANCE = 3  # of 255: a frame decoded on another backend before its drift is detected (measured: 1)

# Where decoding a torch-encoded stream starts to differ when only this network runs in onnxruntime: the index
# of the first frame after which the decoder state (the x0 latent) differs from the encoder's; None: the state
# never differs. Since format version 2 the decoder goes on while it computes the encoder's scale indices (its
# pictures within PIXEL_TOLERANCE); the first unit whose indices differ fails with StateMismatchError.
#
# * encoder-only networks cannot touch the decoder; the VAE decoder only makes the output picture (outside
#   the loop): its frames differ by at most a level, the state never;
# * a float difference in the synthesis (decoders, U-Nets, contexts, inter prior: q_dec scales ŷ unrounded)
#   reaches the x0 latent of the frame that uses it: 0 = the I-frame, 1 = the first (reset) P-frame,
#   2 = the first non-reset P-frame (inter_context);
# * the entropy-parameter-only networks (intra hyper decoder and spatial priors, inter spatial prior) feed
#   means rounded to 1/256 and scales snapped to the table: mostly nothing changes, but a mean within float noise
#   of a rounding boundary shifts ŷ by 1/256 and the state drifts from that frame (measured: inter_spatial_prior
#   at frame 4 of this clip). Marked ROUNDED: no fixed frame, the check still catches it.
ROUNDED = "rounded"
FIRST_DRIFT = {
    "vae_encoder": None, "intra_encoder": None, "inter_encoder": None, "vae_decoder": None,
    "intra_decoder": 0, "unet_iframe": 0,
    "inter_context_reset": 1, "inter_prior": 1, "inter_decoder": 1, "unet_pframe": 1,
    "inter_context": 2,
    "intra_hyper_decoder": ROUNDED, "intra_spatial_prior_1": ROUNDED, "intra_spatial_prior_2": ROUNDED,
    "intra_spatial_prior_3": ROUNDED, "inter_spatial_prior": ROUNDED,
}
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def torch_stream(lora_model):
    """A stream encoded by the torch engine: units, reconstructions and the encoder's state after each frame."""
    codec = Codec(load_engine("torch", lora_model))
    state = codec.new_state(WIDTH, HEIGHT)
    units, recons, states = [], [], []
    for frame in moving_clip(FRAMES):
        unit, state, recon = codec.encode_frame(state, frame)
        units.append(unit), recons.append(recon), states.append(state)
    return units, recons, states


def decode_until_drift(engine, stream):
    """Decode ``stream`` with ``engine`` → (index of the first frame whose state differs or None, max pixel
    difference of the frames decoded, index of the unit that raised StateMismatchError or None)."""
    units, recons, states = stream
    codec = Codec(engine)
    state = codec.new_state(WIDTH, HEIGHT)
    drift, worst = None, 0
    for i, unit in enumerate(units):
        try:
            frame, state = codec.decode_frame(state, unit)
        except StateMismatchError:
            return drift, worst, i
        worst = max(worst, int(np.abs(frame.astype(int) - recons[i].astype(int)).max()))
        if drift is None and not torch.equal(state.ref_frame, states[i].ref_frame):
            drift = i
    return drift, worst, None


def assert_decodes_its_own_stream(engine, frames: int) -> None:
    """An encoder and a decoder on the same engine agree exactly: every frame, every state check."""
    codec = Codec(engine)
    enc, dec = codec.new_state(WIDTH, HEIGHT), codec.new_state(WIDTH, HEIGHT)
    for frame in moving_clip(frames):
        unit, enc, recon = codec.encode_frame(enc, frame)
        decoded, dec = codec.decode_frame(dec, unit)
        assert np.array_equal(decoded, recon)
        assert dec.check() == enc.check()


# --------------------------------------------------------------------------------------------------- interface
def test_registry():
    assert {"torch", "onnxruntime", "tensorrt"} <= set(engine_names())
    with pytest.raises(EngineUnavailableError, match="unknown engine 'openvino'"):
        load_engine("openvino", None)


@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_engines_satisfy_the_interface(name, lora_model, onnx_store):
    options = {"onnx_dir": onnx_store.root} if name == "onnxruntime" else {}
    engine = load_engine(name, lora_model, **options)
    assert isinstance(engine, Engine)
    for protocol, obj in ((ModelNetworks, engine), (IntraNetwork, engine.rate(0).intra), (InterNetwork, engine.rate(0).inter),
                          (VAENetwork, engine.vae)):
        members = [m for m in vars(protocol) if not m.startswith("_")] + list(getattr(protocol, "__annotations__", {}))
        assert all(hasattr(obj, m) for m in members), (protocol.__name__, [m for m in members if not hasattr(obj, m)])
    assert callable(engine.rate(0).unet)
    assert engine.name == name and engine.device == torch.device("cpu")
    info = engine.info()
    assert {"engine", "precision", "runtime", "device"} <= set(info) and all(isinstance(v, str) for v in info.values())
    assert info["engine"] == name and info["precision"] == "fp32" and name in info["runtime"]
    assert (engine.model_id, engine.weight_hash, engine.num_rates) == (lora_model.model_id, lora_model.weight_hash, 1)
    codec = Codec(engine)  # every network runs: an I-frame, a reset P-frame and a P-frame, encoded and decoded
    enc, dec = codec.new_state(WIDTH, HEIGHT), codec.new_state(WIDTH, HEIGHT)
    for _ in range(3):
        unit, enc, _ = codec.encode_frame(enc, np.full((HEIGHT, WIDTH, 3), 128, np.uint8), reconstruct=False)
        _, dec = codec.decode_frame(dec, unit)


def test_torch_reference_is_the_model_itself(lora_model):
    engine = load_engine("torch", lora_model)
    assert engine.rate(0) is lora_model.rate(0) and engine.vae is lora_model.vae
    with pytest.raises(TypeError):
        load_engine("torch", lora_model, threads=2)


def test_torch_engine_refuses_what_it_cannot_do(lora_model):
    with pytest.raises(EngineUnavailableError, match="CUDA graphs need a CUDA device"):
        load_engine("torch", lora_model, cuda_graphs=True)
    with pytest.raises(ValueError, match="unknown precision"):
        load_engine("torch", lora_model, precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(EngineUnavailableError, match="no CUDA GPU"):
            load_engine("torch", lora_model, device="cuda")


def test_torch_bf16_keeps_the_entropy_path_fp32(lora_model, torch_stream):
    engine = load_engine("torch", lora_model, precision="bf16")
    spec = SPECS["inter_prior"]
    inputs = spec.sample_inputs(lora_model.preset, 1, HEIGHT, WIDTH)
    with torch.inference_mode():
        want = spec.call(lora_model.rate(0).inter, *inputs)
        got = engine.run("inter_prior", 0, *inputs)
        for a, b in zip(got, want):
            assert torch.equal(a, b)  # exactly the fp32 reference
        x = torch.rand(1, 3, HEIGHT, WIDTH) * 2 - 1
        latent = engine.vae.encode(x)
        assert latent.dtype == torch.float32
        assert 0 < (latent - lora_model.vae.encode(x)).abs().max() < 0.05  # bf16 arithmetic: close, not equal
    assert_decodes_its_own_stream(engine, 2)  # a bf16 encoder and decoder agree with each other ...
    # ... and a bf16 decoder of an fp32 stream reports the drift instead of decoding it
    drift, worst, raised = decode_until_drift(engine, torch_stream)
    # The I-frame shows, in bf16 arithmetic, within a bound: random weights (the 16-channel tiny VAE) amplify bf16's
    # rounding to tens of levels.
    assert drift == 0 and raised == 1 and worst <= 64


# --------------------------------------------------------------------------------------------------- onnxruntime
def test_onnxruntime_engine_codes_streams_it_decodes_exactly(lora_model, onnx_store):
    assert_decodes_its_own_stream(load_engine("onnxruntime", lora_model, onnx_dir=onnx_store.root, threads=2), FRAMES)


def test_torch_stream_on_onnxruntime_reports_the_drift(lora_model, onnx_store, torch_stream):
    """The whole onnxruntime engine differs from torch in the last bits: its state drifts from the encoder's or a
    unit's scale indices differ (which unit first depends on the weights; a rounded entropy parameter can differ
    already in the I-frame). Every frame that comes out is within the tolerance, and a unit whose indices differ
    fails (StateMismatchError), never noise."""
    engine = load_engine("onnxruntime", lora_model, onnx_dir=onnx_store.root)
    drift, worst, raised = decode_until_drift(engine, torch_stream)
    assert drift is not None or raised is not None  # the other engine shows, in the state or as a refused unit
    assert worst <= PIXEL_TOLERANCE
    assert raised is None or drift is None or raised >= drift


@pytest.mark.parametrize("name", list(SPECS))
def test_torch_stream_with_one_network_on_onnxruntime(name, lora_model, onnx_store, torch_stream):
    engine = load_engine("onnxruntime", lora_model, onnx_dir=onnx_store.root, networks=[name])
    drift, worst, raised = decode_until_drift(engine, torch_stream)
    assert worst <= PIXEL_TOLERANCE  # every frame that comes out is the picture, within a few levels
    expected = FIRST_DRIFT[name]
    if drift is None:  # an identical state computes identical entropy parameters, unless this network rounds them
        assert raised is None or expected == ROUNDED
    else:
        assert raised is None or raised > drift  # a unit whose scale indices differ is refused, never noise
    if expected != ROUNDED:
        assert drift == expected
    if name == "vae_decoder":
        assert worst > 0  # its pictures differ (by a level), its state does not


def test_onnxruntime_options_are_checked(lora_model, onnx_store):
    with pytest.raises(ValueError, match="optimization level"):
        load_engine("onnxruntime", lora_model, onnx_dir=onnx_store.root, optimization="max")
    with pytest.raises(ValueError, match="unknown networks"):
        load_engine("onnxruntime", lora_model, onnx_dir=onnx_store.root, networks=["unet"])
    with pytest.raises(EngineUnavailableError, match=r"pip install 's2vc\[gpu\]'") if "CUDAExecutionProvider" not in \
            __import__("onnxruntime").get_available_providers() else pytest.raises(ValueError):
        load_engine("onnxruntime", lora_model, onnx_dir=onnx_store.root, provider="cuda")


# --------------------------------------------------------------------------------------------------- TensorRT
@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_tensorrt_engine_says_what_to_install(lora_model):
    with pytest.raises(EngineUnavailableError, match=r"pip install 's2vc\[gpu\]'"):
        load_engine("tensorrt", lora_model)


@pytest.mark.skipif(not (HAS_TENSORRT and torch.cuda.is_available()), reason="needs tensorrt (pip install 's2vc[gpu]') and a CUDA GPU")
def test_tensorrt_engine_codes_streams_it_decodes_exactly(lora_model, tmp_path):
    engine = load_engine("tensorrt", lora_model, precision="fp32", onnx_dir=tmp_path / "onnx", engine_dir=tmp_path / "trt",
                         buckets=((256, 192),))
    assert_decodes_its_own_stream(engine, 3)


# --------------------------------------------------------------------------------------------------- CLI
def test_cli_engine_option(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from s2vc.cli import app

    monkeypatch.setenv("S2VC_CACHE_DIR", str(tmp_path / "cache"))  # graphs exported on first use land here
    raw = tmp_path / "clip.rgb"
    raw.write_bytes(b"".join(frame.tobytes() for frame in moving_clip(3)))
    stream = tmp_path / "clip.s2vc"
    runner = CliRunner()
    size = ["--size", f"{WIDTH}x{HEIGHT}", "--model", "tiny"]
    result = runner.invoke(app, ["encode", str(raw), str(stream), *size, "--engine", "onnxruntime"])
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "cache" / "onnx").glob("*/fp32/unet_pframe.r0.onnx"))
    result = runner.invoke(app, ["decode", str(stream), str(tmp_path / "out.y4m"), "--model", "tiny", "--engine", "onnxruntime"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["decode", str(stream), str(tmp_path / "torch.y4m"), "--model", "tiny", "--engine", "torch"])
    # the other backend: decodes while the entropy parameters agree, else says so naming the frame (format version 2)
    assert result.exit_code == 0 or (result.exit_code == 2 and "made by another engine" in " ".join(result.output.split()))
    result = runner.invoke(app, ["decode", str(stream), str(tmp_path / "x.y4m"), "--model", "tiny", "--engine", "openvino"])
    assert result.exit_code == 2 and "unknown engine 'openvino'" in result.output
