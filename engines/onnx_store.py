"""A folder of ONNX graphs exported from one model in one precision; a missing graph is exported on first use.

Layout: ``manifest.json`` (model id, weight hash, preset, precision, opset) and one ``<graph>.onnx`` per graph
(``<network>[.rN][.WxH].onnx``, see :meth:`s2vc.graphs.NetworkSpec.graph_name`), plus ``<graph>.onnx.data``
for graphs with external weights. A folder made for other weights, another preset or another precision is refused,
never used. The default location is ``$S2VC_CACHE_DIR`` (else ``~/.cache/s2vc``)
``/onnx/<weight hash>-<preset digest>/<precision>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from s2vc.errors import ModelMismatchError
from s2vc.graphs import NetworkSpec

from .onnx_export import EXTERNAL_DATA_THRESHOLD, OPSET, check_onnx_precision, export_onnx

MANIFEST = "manifest.json"
FORMAT = 1
TRACE_SIZE = (128, 128)  # (height, width) traced for the graphs with dynamic height/width


def cache_root() -> Path:
    return Path(os.environ.get("S2VC_CACHE_DIR") or Path.home() / ".cache" / "s2vc")


def default_store_dir(model, precision: str) -> Path:
    """The cache folder of ``model``'s graphs: keyed by its weight hash and its preset (the same weights under
    another preset, such as one that gained a coding tool, are another model to the graphs' manifest)."""
    preset = hashlib.sha256(json.dumps(model.preset.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return cache_root() / "onnx" / f"{model.weight_hash.hex()}-{preset}" / precision


class ExportStore:
    """Graphs of ``model`` (an :class:`~s2vc.model.S2VCModel`) in ``precision`` under ``root``."""

    def __init__(self, root: str | Path, model, precision: str = "fp32", *, opset: int = OPSET,
                 external_threshold: int = EXTERNAL_DATA_THRESHOLD) -> None:
        check_onnx_precision(precision)
        self.root = Path(root)
        self.model = model
        self.precision = precision
        self.opset = opset
        self.external_threshold = external_threshold
        self._lock = threading.Lock()
        self.manifest = json.loads(json.dumps({  # as it reads back from JSON (lists, not tuples)
            "format": FORMAT, "model_id": model.model_id, "weight_hash": model.weight_hash.hex(),
            "preset": model.preset.to_dict(), "precision": precision, "opset": opset,
        }))
        self._check_or_write_manifest()

    def _check_or_write_manifest(self) -> None:
        path = self.root / MANIFEST
        if path.is_file():
            found = json.loads(path.read_text())
            for key in ("format", "weight_hash", "precision", "preset"):
                if found.get(key) != self.manifest[key]:
                    theirs, ours = found.get(key), self.manifest[key]
                    if key == "preset" and isinstance(theirs, dict):  # name the fields that differ, not the whole preset
                        fields = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
                        theirs, ours = ({k: v.get(k) for k in fields} for v in (theirs, ours))
                    raise ModelMismatchError(
                        f"{self.root} holds graphs exported with another {key} ({theirs!r}; this model: {ours!r}); "
                        "export again into an empty folder (s2vc export onnx --out DIR)"
                    )
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.manifest, indent=2, sort_keys=True))

    def path(self, spec: NetworkSpec, rate: int | None, size: tuple[int, int] | None = None) -> Path:
        """The graph file of ``spec`` for rate point ``rate`` (and padded (height, width) ``size`` for the specs
        without dynamic height/width), exported now if missing."""
        if spec.per_rate and rate is None:
            raise ValueError(f"{spec.name} has one graph per rate point: give the rate")
        if not spec.dynamic_hw and size is None:
            raise ValueError(f"{spec.name} has one graph per frame size: give the padded (height, width)")
        rate = rate if spec.per_rate else None
        path = self.root / f"{spec.graph_name(rate, size)}.onnx"
        if not path.is_file():
            with self._lock:
                if not path.is_file():
                    self._export(spec, rate, size if not spec.dynamic_hw else TRACE_SIZE, path)
        return path

    def _export(self, spec: NetworkSpec, rate: int | None, size: tuple[int, int], path: Path) -> None:
        """Export into a scratch folder, then move the weights file and the graph in place (graph last, so a
        graph file that exists is complete)."""
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".export-") as tmp:
            staged = export_onnx(
                spec, self.model, rate, Path(tmp) / path.name, precision=self.precision, size=size, opset=self.opset,
                external_threshold=self.external_threshold,
                metadata={"s2vc.weight_hash": self.manifest["weight_hash"], "s2vc.model_id": self.model.model_id},
            )
            data = staged.with_name(staged.name + ".data")
            if data.is_file():
                shutil.move(str(data), path.with_name(data.name))
            os.replace(staged, path)
