"""``s2vc export onnx|trt``: every network exported to ONNX ahead of time, or built into TensorRT engines.

The command (:mod:`export.cli`) drives what the engines otherwise do on first use: what a network's graph is comes
from :mod:`s2vc.graphs`, the ONNX export and its folder from :mod:`engines.onnx_export` and
:mod:`engines.onnx_store`, the shape profiles and TensorRT builds from :mod:`engines.profiles` and
:mod:`engines.tensorrt_build`. ``export`` uses :mod:`s2vc` and :mod:`engines`; nothing imports ``export``.
"""
