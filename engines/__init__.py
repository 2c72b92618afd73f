"""Runtimes that execute the S²VC networks behind the protocol of :mod:`s2vc.protocol`.

An engine wraps a loaded :class:`~s2vc.model.S2VCModel` and returns an object that satisfies
:class:`s2vc.protocol.ModelNetworks`, so :class:`s2vc.codec.Codec` runs on it unchanged. Engines are found by
name through the entry-point group ``s2vc.engines`` (see ``pyproject.toml``), so :mod:`s2vc` never imports a
runtime and a third party can add one.

    engine = load_engine("onnxruntime", model, device="cpu")
    codec = Codec(engine)

Every engine is an :class:`~engines.base.Engine`: the protocol plus ``name``, ``device`` and ``info()``. Built in:
``torch`` (:mod:`engines.torch_engine`), ``onnxruntime`` (:mod:`engines.onnxruntime_engine`), ``tensorrt``
(:mod:`engines.tensorrt_engine`). The graphs they run are those of :mod:`s2vc.graphs`; the onnxruntime and TensorRT
engines export and build them on first use (:mod:`engines.onnx_store`, :mod:`engines.tensorrt_build`). Installed
as ``s2vc_engines``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from s2vc.errors import S2VCError


class EngineUnavailableError(S2VCError):
    """The named engine cannot run here (its runtime is not installed, or no GPU); the message says what to do."""


def engine_names() -> list[str]:
    """Names of the installed engines, e.g. ``['onnxruntime', 'tensorrt', 'torch']``."""
    return sorted(ep.name for ep in entry_points(group="s2vc.engines"))


def load_engine(name: str, model: Any, **options: Any) -> Any:
    """Wrap ``model`` in the engine called ``name``; ``options`` (device, precision, cache_dir, ...) go to it.

    Raises :class:`EngineUnavailableError` for an unknown name or a runtime that is not installed.
    """
    for ep in entry_points(group="s2vc.engines"):
        if ep.name == name:
            return ep.load()(model, **options)
    raise EngineUnavailableError(f"unknown engine {name!r}; installed engines: {', '.join(engine_names()) or 'none'}")


from .base import Engine  # noqa: E402  (after EngineUnavailableError, which the engine modules import from here)

__all__ = ["Engine", "EngineUnavailableError", "engine_names", "load_engine"]
