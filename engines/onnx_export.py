"""Export one network spec to one ONNX file.

Uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) with ``dynamic_axes``: it traces
these networks in seconds and keeps batch, height and width symbolic. (The dynamo exporter takes several times
longer here and rejects the spatial axes on guards derived from the sample size.) Tracing runs with batch 2 so
that no batch-1 fast path (:func:`s2vc.networks.blocks.conv1x1_mm`) is baked into the graph.

Graphs over :data:`EXTERNAL_DATA_THRESHOLD` bytes of weights (protobuf's 2 GB limit) keep their weights in one
``<file>.data`` next to the ``.onnx`` file. Precision: the network is copied and cast to fp16 except the
entropy-parameter specs, which stay fp32; graph I/O is float32 in every case (casts at the boundary).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import onnx
import torch

from s2vc.graphs import NetworkSpec, precision_dtype

OPSET = 17
#: Precisions an ONNX graph can be exported in. bf16 is not one: ONNX's Conv accepts bfloat16 only from opset 22,
#: beyond what the TorchScript exporter writes (the torch engine runs bf16 itself).
ONNX_PRECISIONS = ("fp32", "fp16")
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26  # bytes of weights above which the weights go to an external file
SAMPLE_BATCH = 2


def export_module(spec: NetworkSpec, model, rate: int | None, precision: str = "fp32") -> torch.nn.Module:
    """The torch module that :func:`export_onnx` traces: the spec's network (adapter merged for the U-Net) in
    ``precision`` (fp32 for the entropy-parameter specs), float32 I/O, eval mode, on the CPU."""
    check_onnx_precision(precision)
    dtype = torch.float32 if spec.entropy_params else precision_dtype(precision)
    owner = spec.standalone(model, rate)  # a copy: the caller's model keeps its device, dtype and mode
    return spec.module(owner.to(device="cpu", dtype=dtype), dtype).eval()


def check_onnx_precision(precision: str) -> None:
    if precision not in ONNX_PRECISIONS:
        precision_dtype(precision)  # an unknown name gets the general message
        raise ValueError(f"ONNX graphs are exported in {' or '.join(ONNX_PRECISIONS)}, not {precision} (ONNX Conv has no "
                         "bfloat16 before opset 22); use fp16, or the torch engine with precision='bf16'")


def export_onnx(
    spec: NetworkSpec,
    model,
    rate: int | None,
    path: str | Path,
    *,
    precision: str = "fp32",
    size: tuple[int, int] = (128, 128),
    opset: int = OPSET,
    external_threshold: int = EXTERNAL_DATA_THRESHOLD,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``spec``'s graph for rate point ``rate`` to ``path``; ``size`` = the padded (height, width) traced
    (the graph's fixed size when the spec has no dynamic height/width). Returns ``path``."""
    path = Path(path)
    module = export_module(spec, model, rate, precision)
    inputs = spec.sample_inputs(model.preset, SAMPLE_BATCH, *size)
    weight_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values taken from shapes (fixed at 64-multiples)
        traced = Path(tmp) / "graph.onnx"
        torch.onnx.export(
            module, inputs, str(traced), dynamo=False, opset_version=opset, input_names=list(spec.inputs),
            output_names=list(spec.outputs), dynamic_axes=spec.dynamic_axes(model.preset), do_constant_folding=True,
        )
        graph = onnx.load(str(traced))  # also reads any external data the exporter wrote
    props = {"s2vc.network": spec.name, "s2vc.precision": precision, "s2vc.rate": "" if rate is None else str(rate),
             "s2vc.size": f"{size[1]}x{size[0]}" if not spec.dynamic_hw else "dynamic", **(metadata or {})}
    onnx.helper.set_model_props(graph, props)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    if weight_bytes > external_threshold:
        onnx.save_model(graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name, size_threshold=1024)
    else:
        onnx.save_model(graph, str(path))
    return path
