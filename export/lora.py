"""The codec U-Net with one LoRA adapter merged: plain conv/linear layers, no PEFT wrappers.

Exported graphs and compiled torch modules see ordinary layers whose weights are ``W + B·A·α/r`` of the chosen
adapter (``iframe`` or ``pframe``), so each adapter becomes its own network. The source module is not changed.
"""

from __future__ import annotations

import copy

import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from s2vc.networks.unet import ADAPTERS, CodecUNet


def merge_adapter(unet: CodecUNet, adapter: str) -> CodecUNet:
    """A copy of ``unet`` (eval mode) with ``adapter`` merged into every LoRA-wrapped layer and the wrappers removed."""
    if adapter not in ADAPTERS:
        raise ValueError(f"unknown adapter {adapter!r}; expected one of {ADAPTERS}")
    merged = copy.deepcopy(unet).eval()
    with torch.no_grad():
        for name, layer in list(merged.named_modules()):
            if not isinstance(layer, BaseTunerLayer):
                continue
            base = layer.base_layer
            base.weight.add_(layer.get_delta_weight(adapter).to(base.weight.dtype))
            parent_name, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent_name) if parent_name else merged, child, base)
    # No LoRA layers are left: adapter switches and the merged-weight fast path have nothing to do.
    merged._lora_layers, merged._lora_leaves = [], []
    merged.merged_inference = False
    merged.clear_merged_cache()
    return merged
