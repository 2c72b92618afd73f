"""Checkpoint I/O: this project's own format and the official S²VC release layout.

Own format (a folder): ``config.json`` (format tag, preset widths, model id, rate names, sha256 of the weights
file) + ``model.safetensors`` (keys ``vae.*`` and ``rates.<i>.{intra,inter,unet}.*``). Rate points load lazily.

Official release (a folder as the release's archives unpack)::

    SD_ckpts/stable-diffusion-v1-5/            diffusers folder (only unet/config.json is read)
    SD_ckpts/stable-diffusion-2-1/vae/         config.json + diffusion_pytorch_model.safetensors
    I_ckpts/onedc_lmbda<I>/model_1.safetensors intra codec
    P_ckpts/lmbda<V>/model_1.safetensors       inter codec
    P_ckpts/lmbda<V>/model.safetensors         codec U-Net (base + both LoRA adapters + TCG + heads)

Weights never come from the network: every path here is local.

Weights by rule (:func:`rule_release_model`): the official architecture with every tensor of the release files
made from its key alone, the rule of the official golden vectors (``tests/test_official_golden.py``,
``docs/official.md``), so anyone can rebuild the same "random" official model without the release.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError
from .model import RateModel, S2VCModel, build_model
from .presets import OFFICIAL, TINY, Preset, get_preset

FORMAT_TAG = "s2vc-checkpoint"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = REPO_ROOT / "weights" / "default"


# ----------------------------------------------------------------------------------------------- own format
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def save_checkpoint(
    model: S2VCModel, folder: str | Path, *, extra: Mapping[str, object] | None = None, storage_dtype: str = "float32"
) -> Path:
    """Write ``model`` (every rate point, loading lazy ones) as config.json + model.safetensors.

    ``storage_dtype`` float16/bfloat16 halves the file (the shipped default uses float16); loading casts back to
    float32, so encoder and decoder still compute with identical float32 weights.
    """
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"vae.{k}": v for k, v in model.vae.state_dict().items()}
    for i in range(model.num_rates):
        for k, v in model.rate(i).state_dict().items():
            tensors[f"rates.{i}.{k}"] = v
    store = STORAGE_DTYPES[storage_dtype]
    tensors = {k: v.detach().to("cpu", store if v.is_floating_point() else v.dtype).contiguous().clone() for k, v in tensors.items()}
    tensors, aliases = _deduplicate(tensors)
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT_TAG, **({ALIASES_KEY: json.dumps(aliases)} if aliases else {})})
    os.replace(tmp, folder / WEIGHTS_NAME)
    digest = _sha256_file(folder / WEIGHTS_NAME)
    config = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "model_id": model.model_id,
        "preset": model.preset.to_dict(),
        "rate_names": model.rate_names,
        "weights": WEIGHTS_NAME,
        "sha256": digest,
        "storage_dtype": storage_dtype,
        **({"reset_interval": model.reset_interval} if model.reset_interval else {}),
        **(dict(extra) if extra else {}),
    }
    tmp_cfg = folder / (CONFIG_NAME + ".tmp")
    tmp_cfg.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp_cfg, folder / CONFIG_NAME)
    return folder


ALIASES_KEY = "aliases"  # safetensors metadata: JSON {key: key of the stored tensor it equals}


def _deduplicate(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store byte-identical tensors once (rate points that share networks): → (tensors to store, aliases)."""
    first: dict[tuple, str] = {}
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key, tensor in tensors.items():
        raw = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        ident = (str(tensor.dtype), tuple(tensor.shape), hashlib.sha256(raw).digest())
        if ident in first:
            aliases[key] = first[ident]
        else:
            first[ident] = key
            kept[key] = tensor
    return kept, aliases


def _read_aliases(metadata: Mapping[str, str] | None, path: Path) -> dict[str, str]:
    try:
        aliases = json.loads((metadata or {}).get(ALIASES_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the {ALIASES_KEY!r} metadata is not valid JSON: {exc}") from exc
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise CheckpointError(f"{path}: the {ALIASES_KEY!r} metadata must map tensor keys to tensor keys")
    return aliases


def load_checkpoint(folder: str | Path, *, verify: bool = False, device: str | torch.device = "cpu") -> S2VCModel:
    """Read a folder written by :func:`save_checkpoint`. ``verify`` re-hashes the weights file."""
    folder = Path(folder)
    cfg_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if config.get("format") != FORMAT_TAG or config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path} is not an s2vc checkpoint config (format {config.get('format')!r} v{config.get('format_version')})")
    try:
        preset = Preset.from_dict(config["preset"])
        rate_names = list(config["rate_names"])
        digest = str(config["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path} is incomplete: {exc}") from exc
    if verify and _sha256_file(weights_path) != digest:
        raise CheckpointError(f"{weights_path} does not match the sha256 recorded in {cfg_path}")

    stored = STORAGE_DTYPES.get(config.get("storage_dtype", "float32"))
    if stored is None:
        raise CheckpointError(f"{cfg_path}: unknown storage_dtype {config.get('storage_dtype')!r}")

    def load_prefix(prefix: str) -> dict[str, torch.Tensor]:
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            aliases = _read_aliases(f.metadata(), weights_path)
            dangling = sorted(set(aliases.values()) - set(f.keys()))
            if dangling:
                raise CheckpointError(f"{weights_path}: aliases point at tensors the file does not hold: {dangling[:3]}")
            keys = [k for k in (*f.keys(), *aliases) if k.startswith(prefix)]
            tensors = {k[len(prefix):]: f.get_tensor(aliases.get(k, k)) for k in keys}
        if stored is not torch.float32:  # half-precision storage: compute in float32
            tensors = {k: v.float() if v.dtype == stored else v for k, v in tensors.items()}
        return tensors

    def loader(index: int) -> RateModel:
        module = RateModel(preset)
        _load_strict(module, load_prefix(f"rates.{index}."), f"{weights_path} (rate point {index})")
        return module

    model = S2VCModel(
        preset, rate_names, model_id=config.get("model_id"), weight_hash=bytes.fromhex(digest)[:8], loader=loader, build_rates=False
    )
    _load_strict(model.vae, load_prefix("vae."), f"{weights_path} (vae)")
    reset_interval = config.get("reset_interval")
    if reset_interval is not None and (not isinstance(reset_interval, int) or reset_interval < 1):
        raise CheckpointError(f"{cfg_path}: reset_interval must be a positive integer, got {reset_interval!r}")
    model.reset_interval = reset_interval
    model.to(device)
    for i in range(len(rate_names)):  # own checkpoints are small enough to keep every rate point resident
        model.rate(i)
    return model.eval()


# ----------------------------------------------------------------------------------------------- release
@dataclass(frozen=True)
class ReleaseRate:
    """One of the release's 8 rate points: the video λ of its P folder and the λ of the paired I codec."""

    video_lambda: str
    intra_lambda: str

    @property
    def name(self) -> str:
        return f"lmbda{self.video_lambda}"

    def files(self, root: Path) -> dict[str, Path]:
        return {
            "intra": root / "I_ckpts" / f"onedc_lmbda{self.intra_lambda}" / "model_1.safetensors",
            "inter": root / "P_ckpts" / self.name / "model_1.safetensors",
            "unet": root / "P_ckpts" / self.name / "model.safetensors",
        }


# The release's pairing table, in rate order: index 0 = fewest bits (highest λ), index 7 = most bits.
RELEASE_RATES: tuple[ReleaseRate, ...] = (
    ReleaseRate("5.2", "12.2"),
    ReleaseRate("3.7", "7.4"),
    ReleaseRate("2.6", "4.6"),
    ReleaseRate("1.8", "2.9"),
    ReleaseRate("1.2", "2.9"),
    ReleaseRate("0.6", "1.8"),
    ReleaseRate("0.4", "1.8"),
    ReleaseRate("0.2", "1.8"),
)
SD15_DIR = Path("SD_ckpts") / "stable-diffusion-v1-5"
SD21_VAE_DIR = Path("SD_ckpts") / "stable-diffusion-2-1" / "vae"
VAE_WEIGHTS = "diffusion_pytorch_model.safetensors"


def is_release_root(path: str | Path) -> bool:
    path = Path(path)
    return (path / "SD_ckpts").is_dir() or (path / "P_ckpts").is_dir() or (path / "I_ckpts").is_dir()


def release_available_rates(root: str | Path) -> list[int]:
    root = Path(root)
    return [i for i, r in enumerate(RELEASE_RATES) if all(p.is_file() for p in r.files(root).values())]


def load_release(
    root: str | Path, rates: Iterable[int] | None = None, *, device: str | torch.device = "cpu", share_tensors: bool = True
) -> S2VCModel:
    """Load the official release as distributed. ``rates``: rate points to load now (others load on first use).

    A clear :class:`CheckpointError` names every missing file and any tensor that does not match the
    architecture. With ``share_tensors``, tensors that are byte-identical across rate points (the frozen SD1.5
    base inside every ``model.safetensors``, a shared I codec) are held once.
    """
    root = Path(root)
    vae_weights = root / SD21_VAE_DIR / VAE_WEIGHTS
    missing = [p for p in (root / SD15_DIR, root / SD21_VAE_DIR / "config.json", vae_weights) if not p.exists()]
    wanted = list(range(len(RELEASE_RATES))) if rates is None else sorted(set(rates))
    if rates is None:
        wanted = release_available_rates(root)
        if not wanted:
            missing.append(root / "P_ckpts/lmbda<λ>/{model,model_1}.safetensors and the paired I_ckpts/onedc_lmbda<λ>/model_1.safetensors")
    for i in wanted:
        if not 0 <= i < len(RELEASE_RATES):
            raise CheckpointError(f"release rate point {i} does not exist (0..{len(RELEASE_RATES) - 1})")
        missing += [p for p in RELEASE_RATES[i].files(root).values() if not p.is_file()]
    if missing:
        listed = "\n  ".join(str(p) for p in dict.fromkeys(missing))
        raise CheckpointError(f"the S²VC release at {root} is incomplete; missing:\n  {listed}")
    _check_release_configs(root)

    # the pool moves each distinct tensor to the device once: module.to(device) afterwards would give every rate
    # point its own device copy of the tensors they share on the CPU
    pool = _TensorPool(device) if share_tensors else None

    def read(path: Path) -> dict[str, torch.Tensor]:
        tensors = {k: aligned(v) for k, v in load_file(str(path), device="cpu").items()}
        return pool.share(tensors) if pool is not None else tensors

    def loader(index: int) -> RateModel:
        files = RELEASE_RATES[index].files(root)
        absent = [str(p) for p in files.values() if not p.is_file()]
        if absent:
            raise CheckpointError(f"rate point {index} ({RELEASE_RATES[index].name}) needs missing files: {', '.join(absent)}")
        module = _empty(lambda: RateModel(OFFICIAL))
        for part, path in files.items():
            _load_strict(getattr(module, part), read(path), str(path), assign=True)
        return module.to(device).eval()

    identity = hashlib.sha256(b"s2vc-official-release|" + _file_identity(vae_weights))
    model = S2VCModel(
        OFFICIAL, [r.name for r in RELEASE_RATES], model_id="official", weight_hash=identity.digest()[:8], loader=loader, build_rates=False
    )
    _load_strict(model.vae, load_file(str(vae_weights)), str(vae_weights))
    model.to(device).eval()
    for i in wanted:
        model.rate(i)
    return model


def save_release(model: S2VCModel, root: str | Path, rate_map: Mapping[int, int]) -> Path:
    """Write an official-preset model in the release layout (``rate_map``: model rate → release rate index).

    Used by the tests and by anyone who fine-tunes the official model and wants the release's file layout.
    """
    if model.preset != OFFICIAL:
        raise CheckpointError("only official-preset models can be written in the release layout")
    root = Path(root)
    (root / SD15_DIR / "unet").mkdir(parents=True, exist_ok=True)
    (root / SD21_VAE_DIR).mkdir(parents=True, exist_ok=True)
    # The SD configs the release ships; the loader checks that they describe the official architecture.
    unet_config = {"_class_name": "UNet2DConditionModel", "block_out_channels": list(OFFICIAL.unet.block_out_channels),
                   "cross_attention_dim": OFFICIAL.unet.cross_attention_dim, "layers_per_block": OFFICIAL.unet.layers_per_block}
    vae_config = {"_class_name": "AutoencoderKL", "block_out_channels": list(OFFICIAL.vae.block_out_channels),
                  "latent_channels": OFFICIAL.vae.latent_channels, "layers_per_block": OFFICIAL.vae.layers_per_block,
                  "scaling_factor": OFFICIAL.vae.scaling_factor}
    (root / SD15_DIR / "unet" / "config.json").write_text(json.dumps(unet_config, indent=2))
    (root / SD21_VAE_DIR / "config.json").write_text(json.dumps(vae_config, indent=2))
    save_file(_plain(model.vae.state_dict()), str(root / SD21_VAE_DIR / VAE_WEIGHTS))
    for model_rate, release_rate in rate_map.items():
        nets = model.rate(model_rate)
        files = RELEASE_RATES[release_rate].files(root)
        for part, path in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(_plain(getattr(nets, part).state_dict()), str(path))
    return root


def _check_release_configs(root: Path) -> None:
    """The SD configs of the release must describe the architecture of the official preset."""
    vae_cfg = _read_json(root / SD21_VAE_DIR / "config.json")
    expect = OFFICIAL.vae
    got = tuple(vae_cfg.get("block_out_channels", expect.block_out_channels))
    if got != expect.block_out_channels or vae_cfg.get("latent_channels", expect.latent_channels) != expect.latent_channels:
        raise CheckpointError(f"{root / SD21_VAE_DIR / 'config.json'} does not describe the SD2.1 VAE (block_out_channels {got})")
    unet_cfg_path = root / SD15_DIR / "unet" / "config.json"
    if unet_cfg_path.is_file():
        unet_cfg = _read_json(unet_cfg_path)
        got = tuple(unet_cfg.get("block_out_channels", OFFICIAL.unet.block_out_channels))
        if got != OFFICIAL.unet.block_out_channels:
            raise CheckpointError(f"{unet_cfg_path} does not describe the SD1.5 U-Net (block_out_channels {got})")


# ----------------------------------------------------------------------------------------------- weights by rule
RULE_GAIN = 0.5  # the golden vectors' gain: with 1.0 the P-frame residual stacks overflow to NaN


def rule_tensor(key: str, shape: Sequence[int], gain: float = RULE_GAIN) -> torch.Tensor:
    """The float32 tensor the weight rule gives the release key ``key`` (a key as it appears in its file).

    * a key containing ``norm`` and ending in ``.weight``: ones; ending in ``.bias``: zeros;
    * every other tensor, weights and biases alike: ``randn(shape) · gain / √fan_in`` drawn from a
      ``torch.Generator`` seeded with the CRC-32 of the key, where ``fan_in = prod(shape[1:])`` for tensors of two
      or more dimensions and 1 otherwise.

    Depends on the key and shape only (not on the order tensors are made in, nor on the file a key sits in).
    """
    shape = tuple(int(v) for v in shape)
    if "norm" in key and key.endswith(".weight"):
        return torch.ones(shape)
    if "norm" in key and key.endswith(".bias"):
        return torch.zeros(shape)
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    return torch.randn(shape, generator=generator) * (gain / math.sqrt(fan_in))


def rule_state_dict(module: nn.Module, gain: float = RULE_GAIN) -> dict[str, torch.Tensor]:
    """Every entry of ``module.state_dict()`` (on meta or real) replaced by :func:`rule_tensor` of its key."""
    return {key: rule_tensor(key, value.shape, gain) for key, value in module.state_dict().items()}


def rule_release_model(rates: Iterable[int] = (7,), *, gain: float = RULE_GAIN, device: str | torch.device = "cpu") -> S2VCModel:
    """The official preset with the release's 8 rate points, every tensor made by :func:`rule_tensor`.

    The SD2.1 VAE and each rate point's three files (intra codec, inter codec, codec U-Net) get the tensors the
    rule gives their keys; as the rule ignores the rate point, every rate point holds the same weights. ``rates``
    are built now, the others on first use. ≈ 7.3 GB of float32 per rate point with the VAE; about a minute on
    two cores. The weight hash names the rule and its gain, so streams made with it say so.
    """

    def fill(module: nn.Module, label: str) -> None:
        _load_strict(module, rule_state_dict(module, gain), f"rule weights ({label})", assign=True)

    def loader(index: int) -> RateModel:
        module = _empty(lambda: RateModel(OFFICIAL))
        for part in ("intra", "inter", "unet"):
            fill(getattr(module, part), f"{RELEASE_RATES[index].name} {part}")
        return module.to(device).eval()

    identity = hashlib.sha256(f"s2vc-official-rule|crc32-seeded randn|gain {gain!r}".encode()).digest()[:8]
    model = _empty(lambda: S2VCModel(
        OFFICIAL, [r.name for r in RELEASE_RATES], model_id="official", weight_hash=identity, loader=loader, build_rates=False
    ))
    fill(model.vae, "vae")
    model.to(device).eval()
    for i in sorted(set(rates)):
        model.rate(i)
    return model


# ----------------------------------------------------------------------------------------------- resolving
def load_model(spec: str | Path | None = None, *, device: str | torch.device = "cpu", rates: Iterable[int] | None = None) -> S2VCModel:
    """Resolve what a user names: nothing (the shipped default), a preset name (random weights, for tests and
    benchmarks), an own checkpoint folder, or a release root."""
    if spec is None or str(spec) == "default":
        spec = os.environ.get("S2VC_MODEL") or DEFAULT_MODEL_DIR
        if Path(spec) == DEFAULT_MODEL_DIR and not (DEFAULT_MODEL_DIR / CONFIG_NAME).is_file():
            # No trained default is installed yet: the tiny architecture with fixed random weights, flagged so
            # that the CLI says its pictures mean nothing. Training ships weights/default/ (config + safetensors).
            model = build_model(TINY, num_rates=4, seed=0).to(device)
            return model
    text = str(spec)
    path = Path(text).expanduser()
    if path.exists():
        if (path / CONFIG_NAME).is_file():
            return load_checkpoint(path, device=device)
        if is_release_root(path):
            return load_release(path, rates, device=device)
        raise CheckpointError(f"{path} is neither an s2vc checkpoint folder (no {CONFIG_NAME}) nor an S²VC release root")
    if text.startswith("preset:") or text in ("tiny", "official"):
        name = text.split(":", 1)[-1]
        return build_model(get_preset(name), num_rates=4 if name != "official" else 1).to(device)
    raise CheckpointError(f"model {text!r} not found: give a checkpoint folder, a release root, or a preset (tiny, official)")


# ----------------------------------------------------------------------------------------------- helpers
WEIGHT_ALIGNMENT = 64  # bytes; what torch's CPU allocator gives every fresh tensor


def aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if its data starts on a 64-byte boundary, else a contiguous aligned copy.

    Tensors read from a safetensors file sit at the file's byte offsets. MKL and oneDNN pick their code path by
    the alignment of the operands, and different paths round differently: a model whose weights sit at other
    offsets than the encoder's computes other floats, and the decoder state check fails on the first P-frame
    (seen on AMD EPYC). Weights are loaded with ``assign=True`` only through this function.
    """
    if t.device.type == "cpu" and t.data_ptr() % WEIGHT_ALIGNMENT:
        return t.clone(memory_format=torch.contiguous_format)
    return t


class _TensorPool:
    """Hands out one tensor per distinct content (dtype, shape, bytes), so identical weights are held once.

    Tensors come in on the CPU (they are hashed there) and go out on ``device``, each distinct one moved once.
    """

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else None
        self._by_digest: dict[tuple[str, tuple[int, ...], bytes], torch.Tensor] = {}

    def share(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for name, t in tensors.items():
            t = t.contiguous()
            key = (str(t.dtype), tuple(t.shape), hashlib.blake2b(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"", digest_size=16).digest())
            shared = self._by_digest.get(key)
            if shared is None:
                shared = t if self.device is None or self.device.type == "cpu" else t.to(self.device)
                self._by_digest[key] = shared
            out[name] = shared
        return out


def _empty(factory):
    """Build a module without spending time on random init (parameters on meta, buffers real)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return factory()


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str, *, assign: bool = False) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} {state[k].dtype}, model {tuple(v.shape)} {v.dtype}"
             for k, v in expected.items() if k in state and (state[k].shape != v.shape or state[k].dtype != v.dtype)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mismatched", wrong)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise CheckpointError(f"{source} does not match the architecture: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True, assign=assign)


def _plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _file_identity(path: Path) -> bytes:
    """Cheap identity of a safetensors file: size, header (names, shapes, offsets), first and last MiB of data."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        header_len = int.from_bytes(head, "little") if len(head) == 8 else 0
        header = f.read(min(header_len, 100_000_000))
        first = f.read(1 << 20)
        f.seek(max(size - (1 << 20), 0))
        last = f.read(1 << 20)
    return hashlib.sha256(str(size).encode() + header + first + last).digest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


__all__ = [
    "RELEASE_RATES",
    "ReleaseRate",
    "is_release_root",
    "load_checkpoint",
    "load_model",
    "load_release",
    "release_available_rates",
    "rule_release_model",
    "rule_state_dict",
    "rule_tensor",
    "save_checkpoint",
    "save_release",
]
