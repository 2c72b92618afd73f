"""The TensorRT engine: each exported graph as a native TensorRT engine per resolution bucket (CUDA only).

Graphs are exported on first use (:class:`engines.onnx_store.ExportStore`), engines built on first use per bucket
(:mod:`engines.profiles`) and cached on disk under their full key (:mod:`engines.tensorrt_build`); a stale or
foreign engine is rebuilt. Inputs and outputs are CUDA torch tensors; each call runs on torch's current stream.
Needs ``pip install 's2vc[gpu]'`` and an NVIDIA GPU; without them :func:`load` raises
:class:`~engines.EngineUnavailableError` saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch

from s2vc.errors import S2VCError
from s2vc.graphs import NetworkSpec

from . import EngineUnavailableError
from .graph_engine import GraphEngine, Runner
from .onnx_store import ExportStore, cache_root, default_store_dir
from .profiles import BUCKETS, bucket_for
from .tensorrt_build import EngineBuilder, TensorRTMissingError, import_tensorrt


class TensorRTEngine(GraphEngine):
    name = "tensorrt"

    def __init__(
        self,
        model,
        device: str | torch.device = "cuda",
        precision: str = "fp16",
        *,
        buckets: tuple[tuple[int, int], ...] = BUCKETS,
        max_batch: int = 4,
        opt_batch: int = 1,
        onnx_dir: str | Path | None = None,
        engine_dir: str | Path | None = None,
        networks: Iterable[str] | None = None,
    ) -> None:
        device = torch.device(device)
        try:
            import_tensorrt()  # before hashing the weights: say what is missing at once
        except TensorRTMissingError as exc:
            raise EngineUnavailableError(str(exc)) from None
        if device.type != "cuda":
            raise EngineUnavailableError(f"the tensorrt engine runs on a CUDA device, not {str(device)!r}")
        super().__init__(model, device, precision, networks)
        self.buckets = tuple(buckets)
        store = ExportStore(onnx_dir or default_store_dir(model, precision), model, precision)
        try:
            self.builder = EngineBuilder(store, engine_dir or cache_root() / "tensorrt", max_batch=max_batch, opt_batch=opt_batch,
                                         device_index=device.index or 0)
        except TensorRTMissingError as exc:
            raise EngineUnavailableError(str(exc)) from None
        trt = self.builder.trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))

    def runtime_version(self) -> str:
        return f"tensorrt {self.builder.trt.__version__} ({self.builder.gpu})"

    def _target(self, spec: NetworkSpec, size: tuple[int, int]) -> tuple[int, int]:
        """The (w, h) an engine is built for: the bucket of a padded (h, w) ``size``, or the size itself."""
        return bucket_for(*size, self.buckets) if spec.dynamic_hw else (size[1], size[0])

    def _context(self, spec: NetworkSpec, rate: int | None, size: tuple[int, int]):
        plan = self.builder.plan(spec, rate, None if spec.dynamic_hw else size, self._target(spec, size))
        engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise S2VCError(f"TensorRT could not load its engine for {spec.graph_name(rate, size)}")
        return engine.create_execution_context()

    def make_runner(self, spec: NetworkSpec, rate: int | None, size: tuple[int, int]) -> Runner:
        contexts: dict[tuple[int, int], Any] = {}  # by target bucket
        device = self.device

        def run(*inputs: torch.Tensor) -> list[torch.Tensor]:
            hw = spec.frame_size(self.preset, inputs)
            target = self._target(spec, hw)
            if target not in contexts:
                contexts[target] = self._context(spec, rate, hw)
            context = contexts[target]
            inputs = [x.to(device=device, dtype=torch.float32).contiguous() for x in inputs]
            for name, x in zip(spec.inputs, inputs):
                context.set_input_shape(name, tuple(x.shape))
                context.set_tensor_address(name, x.data_ptr())
            outputs = []
            for name in spec.outputs:
                y = torch.empty(tuple(context.get_tensor_shape(name)), dtype=torch.float32, device=device)
                context.set_tensor_address(name, y.data_ptr())
                outputs.append(y)
            if not context.execute_async_v3(torch.cuda.current_stream(device).cuda_stream):
                raise S2VCError(f"TensorRT failed to run {spec.name}")
            return outputs

        return run


def load(model: Any, **options: Any) -> TensorRTEngine:
    """Entry point of the ``s2vc.engines`` group; raises EngineUnavailableError without TensorRT or a GPU."""
    return TensorRTEngine(model, **options)
