"""The reference engine: the torch modules themselves (CPU or CUDA), optionally in fp16/bf16, compiled, or
replayed as CUDA graphs.

* ``precision="fp32"`` without ``compile``/``cuda_graphs``: the model's own modules, untouched — the
  reference every other engine is compared with (and the bit-exact golden tests run).
* otherwise each network runs as a module with float32 I/O (:class:`s2vc.graphs.SpecModule`), the U-Net as one
  plain copy per adapter with its LoRA merged (:meth:`s2vc.networks.unet.AdaptedUNet.merged`; two extra U-Net
  copies in memory);
* ``fp16``/``bf16``: the networks are cast copies; the entropy-parameter networks stay fp32 (their outputs choose
  the entropy models), as in the exported graphs;
* ``compile``: every network through ``torch.compile``. The first call at each frame size compiles (seconds to
  minutes): code a frame of each size first (a server warms up at start);
* ``cuda_graphs`` (CUDA only): ``torch.compile(mode="reduce-overhead")``, which records CUDA graphs per shape and
  replays them; outputs are cloned out of the graph pool because the codec keeps them in the stream state.

A bf16/fp16 engine decodes its own streams exactly, but its arithmetic is not fp32's: a stream from another
precision or engine decodes until the first unit whose entropy parameters (scale indices) differ, which fails its
state check (StateMismatchError) before producing a picture.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from s2vc.graphs import NetworkSpec, precision_dtype

from . import EngineUnavailableError
from .graph_engine import GraphEngine, Runner


class TorchEngine(GraphEngine):
    name = "torch"

    def __init__(
        self,
        model,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        *,
        compile: bool = False,
        cuda_graphs: bool = False,
        networks: Iterable[str] | None = None,
    ) -> None:
        device = torch.device(device)
        if cuda_graphs and device.type != "cuda":
            raise EngineUnavailableError(f"CUDA graphs need a CUDA device; this engine runs on {device} (drop cuda_graphs)")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailableError("device 'cuda' asked for, but torch sees no CUDA GPU here; use device='cpu'")
        super().__init__(model, device, precision, networks)
        self.compile = compile
        self.cuda_graphs = cuda_graphs
        model.to(device).eval()
        self._owners: dict[tuple, torch.nn.Module] = {}
        self.reference = precision == "fp32" and not compile and not cuda_graphs
        if self.reference:  # the modules as they are
            self.vae = model.vae

    def rate(self, index: int):
        return self.model.rate(index) if self.reference else super().rate(index)

    def info(self) -> dict[str, str]:
        mode = "cuda-graphs" if self.cuda_graphs else "compiled" if self.compile else "eager"
        return super().info() | {"mode": mode}

    def _owner(self, spec: NetworkSpec, rate: int | None, dtype: torch.dtype) -> torch.nn.Module:
        """The network ``spec`` runs on in ``dtype``: one copy per (network, adapter, dtype), shared by the specs
        that cut the same network; the model's own module when nothing changes."""
        source = spec.owner(self.model, rate)  # one object per network (per adapter for the U-Net)
        key = (id(source), dtype)
        if key not in self._owners:
            copied = spec.adapter is not None or dtype != torch.float32  # one plain U-Net per adapter
            owner = spec.standalone(self.model, rate).to(dtype) if copied else source
            self._owners[key] = owner.to(self.device).eval()
        return self._owners[key]

    def make_runner(self, spec: NetworkSpec, rate: int | None, size: tuple[int, int]) -> Runner:
        dtype = torch.float32 if spec.entropy_params else precision_dtype(self.precision)
        module = spec.module(self._owner(spec, rate, dtype), dtype).eval()
        if not (self.compile or self.cuda_graphs):
            return module
        compiled = torch.compile(module, mode="reduce-overhead" if self.cuda_graphs else "default")
        if not self.cuda_graphs:
            return compiled

        def replay(*inputs: torch.Tensor) -> list[torch.Tensor]:
            torch.compiler.cudagraph_mark_step_begin()
            return [y.clone() for y in compiled(*inputs)]

        return replay


def load(model: Any, **options: Any) -> TorchEngine:
    """Entry point of the ``s2vc.engines`` group: options as :class:`TorchEngine` takes them (device, precision,
    compile, cuda_graphs)."""
    return TorchEngine(model, **options)
