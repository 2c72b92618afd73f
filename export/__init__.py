"""Export of the S²VC networks: ONNX graphs (``s2vc export onnx``) and TensorRT engines (``s2vc export trt``).

* :mod:`export.specs` — one spec per network: I/O names, layouts, dynamic axes, sample inputs, torch wrapper;
* :mod:`export.lora` — the codec U-Net with one LoRA adapter merged into plain layers;
* :mod:`export.onnx_export` — one spec to one ``.onnx`` file (fp32/fp16/bf16, external data when large);
* :mod:`export.store` — a folder of exported graphs for one model and precision, exported on first use;
* :mod:`export.profiles` — resolution buckets and TensorRT min/opt/max shape profiles;
* :mod:`export.tensorrt_build` — TensorRT builds and the on-disk engine cache (import-guarded);
* :mod:`export.cli` — the ``s2vc export`` command.

``export`` uses :mod:`s2vc` only; the runtimes in ``engines/`` use ``export`` (never the other way round).
"""
