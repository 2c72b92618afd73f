"""TensorRT engine builds from the exported ONNX graphs, and the on-disk engine cache.

Written against TensorRT's documented Python API (``tensorrt.Builder``, ``OnnxParser``, optimization profiles,
timing cache, ``build_serialized_network``). TensorRT 11 networks are always strongly typed: the precision is
the ONNX graph's own (fp16 graphs come from ``s2vc export onnx --precision fp16``); on TensorRT 10, whose builder
still has the ``FP16`` flag, it is set as well.

An engine is cached under a key of (weight hash, network and rate point, GPU name, TensorRT version, precision,
shape profile): ``<network>-<digest>.plan`` plus ``<network>-<digest>.json`` holding the key and the plan's
SHA-256. A plan whose sidecar does not match the wanted key, or whose bytes do not match their recorded hash,
is stale or foreign: it is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from s2vc.errors import S2VCError

from .profiles import Profile, profile_for

INSTALL_HINT = "TensorRT is not installed here: pip install 's2vc[gpu]' (tensorrt, onnxruntime-gpu) on a machine with an NVIDIA GPU"
WORKSPACE_BYTES = 8 << 30


class TensorRTMissingError(S2VCError):
    """TensorRT (or a CUDA GPU) is not available; the message says what to install."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTMissingError` with what to install."""
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTMissingError(f"{INSTALL_HINT} ({exc})") from None
    return tensorrt


def gpu_name(device_index: int = 0) -> str:
    """The CUDA device name that engines are built for (part of the cache key)."""
    import torch

    if not torch.cuda.is_available():
        raise TensorRTMissingError("TensorRT engines need an NVIDIA GPU, and torch sees no CUDA device here")
    return torch.cuda.get_device_name(device_index)


@dataclass(frozen=True)
class EngineKey:
    """Everything a built engine depends on; two builds with equal keys are interchangeable."""

    weight_hash: str
    network: str  # graph name, e.g. "unet_pframe.r3"
    gpu: str
    tensorrt: str
    precision: str
    profile: tuple  # Profile.as_dict() as sorted items, hashable

    @classmethod
    def make(cls, weight_hash: bytes, graph: str, gpu: str, tensorrt_version: str, precision: str, profile: Profile) -> "EngineKey":
        return cls(weight_hash.hex(), graph, gpu, tensorrt_version, precision, _freeze(profile.as_dict()))

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def stem(self) -> str:
        return f"{self.network}-{self.digest()[:20]}"


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


class EngineCache:
    """Serialized engines under ``root``, each with a sidecar that records its key and SHA-256."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def plan_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.stem()}.plan"

    def load(self, key: EngineKey) -> bytes | None:
        """The cached plan for ``key``, or None when missing, stale or foreign (the caller rebuilds)."""
        plan, sidecar = self.plan_path(key), self.plan_path(key).with_suffix(".json")
        if not plan.is_file() or not sidecar.is_file():
            return None
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return None
        data = plan.read_bytes()
        if record.get("key") != key.as_dict() or record.get("sha256") != hashlib.sha256(data).hexdigest():
            return None
        return data

    def store(self, key: EngineKey, plan: bytes) -> Path:
        """Write ``plan`` and its sidecar atomically (sidecar last: a plan without one is never loaded)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.plan_path(key)
        sidecar = path.with_suffix(".json")
        sidecar.unlink(missing_ok=True)
        _write_atomic(path, plan)
        record = {"key": key.as_dict(), "sha256": hashlib.sha256(plan).hexdigest()}
        _write_atomic(sidecar, json.dumps(record, indent=2, sort_keys=True).encode())
        return path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build_engine(onnx_path: str | Path, profiles: list[Profile], precision: str, *, timing_cache: str | Path | None = None,
                 workspace_bytes: int = WORKSPACE_BYTES) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine with one optimization profile per entry of ``profiles``.

    The timing cache file (created when missing) is read before and written after the build, so later builds
    of the same layers skip their tactic timing.
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads external weights next to the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise S2VCError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16" and hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 10; TensorRT 11 takes the graph's types
        config.set_flag(trt.BuilderFlag.FP16)
    for profile in profiles:
        trt_profile = builder.create_optimization_profile()
        for name, low, opt, high in profile.shapes:
            trt_profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(trt_profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise S2VCError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def build_or_load(cache: EngineCache, key: EngineKey, onnx_path: str | Path, profile: Profile, *,
                  timing_cache: str | Path | None = None) -> tuple[bytes, bool]:
    """The plan for ``key`` from ``cache``, built (and cached) when missing, stale or foreign → (plan, built)."""
    plan = cache.load(key)
    if plan is not None:
        return plan, False
    plan = build_engine(onnx_path, [profile], key.precision, timing_cache=timing_cache)
    cache.store(key, plan)
    return plan, True


class EngineBuilder:
    """Engines for the graphs of one :class:`~engines.onnx_store.ExportStore` on this GPU: cached under ``engine_dir``
    by their full key, built when missing, stale or foreign. Shared by ``s2vc export trt`` and the tensorrt engine.
    """

    def __init__(self, store, engine_dir: str | Path, *, max_batch: int = 4, opt_batch: int = 1, device_index: int = 0) -> None:
        self.trt = import_tensorrt()
        self.gpu = gpu_name(device_index)
        self.store, self.max_batch, self.opt_batch = store, max_batch, opt_batch
        self.cache = EngineCache(engine_dir)
        self.timing_cache = self.cache.root / f"timing-{self.trt.__version__}-{self.gpu.replace(' ', '_')}.cache"

    def key(self, spec, rate: int | None, size: tuple[int, int] | None, target: tuple[int, int]) -> tuple[EngineKey, Profile]:
        """Key and profile of ``spec``'s engine for bucket ``target`` = (w, h); ``size`` = the padded (h, w) of a
        per-size graph (None for graphs with dynamic height/width)."""
        profile = profile_for(spec, self.store.model.preset, target, self.max_batch, self.opt_batch)
        graph = spec.graph_name(rate, size)
        return EngineKey.make(self.store.model.weight_hash, graph, self.gpu, self.trt.__version__, self.store.precision, profile), profile

    def plan(self, spec, rate: int | None, size: tuple[int, int] | None, target: tuple[int, int]) -> bytes:
        key, profile = self.key(spec, rate, size, target)
        plan, _ = build_or_load(self.cache, key, self.store.path(spec, rate, size), profile, timing_cache=self.timing_cache)
        return plan
