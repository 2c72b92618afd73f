"""The onnxruntime engine: the exported ONNX graphs in onnxruntime sessions (CPU, CUDA or TensorRT provider).

Graphs come from a folder made by ``s2vc export onnx --out DIR`` (``onnx_dir``) or are exported on first use into
the cache (:func:`engines.onnx_store.default_store_dir`, keyed by the weight hash, the preset and the precision). The CPU provider
ships with the ``onnxruntime`` dependency; the CUDA and TensorRT providers need ``pip install 's2vc[gpu]'``.
Inputs and outputs are torch tensors on the engine's device.

    engine = load_engine("onnxruntime", model, threads=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import onnxruntime as ort
import torch

from s2vc.graphs import NetworkSpec

from . import EngineUnavailableError
from .graph_engine import GraphEngine, Runner
from .onnx_store import ExportStore, default_store_dir

GPU_HINT = "install the GPU runtimes with: pip install 's2vc[gpu]' (onnxruntime-gpu, tensorrt)"
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
#: Graphs whose outputs decoding does not depend on (the encoder's analysis transforms, the output VAE decode):
#: they use ``threads``; every other graph runs with ``state_threads`` so that a stream decodes the same for any
#: thread count (docs/bitstream.md, "Determinism").
PARALLEL_NETWORKS = frozenset({"vae_encoder", "vae_decoder", "intra_encoder", "inter_encoder"})


class OnnxRuntimeEngine(GraphEngine):
    name = "onnxruntime"

    def __init__(
        self,
        model,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        *,
        provider: str | None = None,
        onnx_dir: str | Path | None = None,
        threads: int | None = None,
        optimization: str = "all",
        spinning: bool = False,
        torch_threads: int | None = 1,
        state_threads: int | None = 1,
        networks: Iterable[str] | None = None,
    ) -> None:
        super().__init__(model, device, precision, networks)
        self.provider = provider or ("cuda" if self.device.type == "cuda" else "cpu")
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown onnxruntime provider {self.provider!r}; choose one of {', '.join(PROVIDERS)}")
        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"unknown optimization level {optimization!r}; choose one of {', '.join(OPTIMIZATION_LEVELS)}")
        available = ort.get_available_providers()
        if PROVIDERS[self.provider] not in available:
            raise EngineUnavailableError(
                f"onnxruntime {ort.__version__} here has no {PROVIDERS[self.provider]} (available: {', '.join(available)}); {GPU_HINT}"
            )
        if self.provider != "cpu" and self.device.type != "cuda":
            raise ValueError(f"the {self.provider} provider runs on a CUDA device; pass device='cuda'")
        self.store = ExportStore(onnx_dir or default_store_dir(model, precision), model, precision)
        self.options = ort.SessionOptions()
        self.options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
        self.options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.options.intra_op_num_threads = threads or torch.get_num_threads()
        if torch_threads:
            # The codec's own torch work between graph calls (entropy masks, FSQ, x0) is small; torch's OpenMP
            # workers spin after each op and take the cores onnxruntime's pool needs (tiny 320x240 P-frame round
            # trip on 2 cores: 217 ms with torch on 2 threads, 96 ms on 1). None leaves torch's setting alone.
            torch.set_num_threads(torch_threads)
        self.options.inter_op_num_threads = 1
        # Spinning worker threads keep the cores busy after each run; between the many short graph calls of a
        # frame the codec's own torch work then fights them (tiny 320x240 P-frame round trip on 2 cores: 250 ms
        # spinning, 96 ms not). Off by default.
        self.options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.state_threads = state_threads

    def runtime_version(self) -> str:
        return f"onnxruntime {ort.__version__} ({PROVIDERS[self.provider]})"

    def _providers(self) -> list[Any]:
        device_id = self.device.index or 0
        if self.provider == "cpu":
            return ["CPUExecutionProvider"]
        cuda = ("CUDAExecutionProvider", {"device_id": device_id})
        if self.provider == "cuda":
            return [cuda, "CPUExecutionProvider"]
        trt_options = {
            "device_id": device_id, "trt_fp16_enable": self.precision == "fp16",
            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(self.store.root / "ort-trt-cache"),
            "trt_timing_cache_enable": True,
        }
        return [("TensorrtExecutionProvider", trt_options), cuda, "CPUExecutionProvider"]

    def make_runner(self, spec: NetworkSpec, rate: int | None, size: tuple[int, int]) -> Runner:
        path = self.store.path(spec, rate, size)
        options = self.options
        if self.state_threads and self.provider == "cpu" and spec.name not in PARALLEL_NETWORKS:
            options = ort.SessionOptions()
            options.graph_optimization_level = self.options.graph_optimization_level
            options.execution_mode = self.options.execution_mode
            options.intra_op_num_threads = self.state_threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), sess_options=options, providers=self._providers())
        names, device = spec.inputs, self.device

        def run(*inputs: torch.Tensor) -> list[torch.Tensor]:
            feed = {name: np.ascontiguousarray(x.detach().cpu().numpy()) for name, x in zip(names, inputs)}
            return [torch.from_numpy(y).to(device) for y in session.run(None, feed)]

        return run


def load(model: Any, **options: Any) -> OnnxRuntimeEngine:
    """Entry point of the ``s2vc.engines`` group: options as :class:`OnnxRuntimeEngine` takes them."""
    return OnnxRuntimeEngine(model, **options)
