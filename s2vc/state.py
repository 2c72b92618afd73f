"""Per-stream decoder state, kept outside the networks.

A :class:`StreamState` is what a session owns: the decoded picture buffer (previous x0 latent, previous inter
feature, previous U-Net down-block features) plus counters. Networks never hold it; the step API in
:mod:`s2vc.codec` passes it in and returns a new one. Tensors are never modified in place, so an old state stays
valid (a caller may keep it to retry, or drop it to reset).
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class StreamState:
    """Decoded picture buffer and counters of one stream (encoder and decoder keep identical copies).

    * ``ref_frame``: x0 latent of the previous frame (4, H/8, W/8); source of the context on a reset P-frame.
    * ``ref_feature``: inter-codec decoder feature of the previous P-frame (ch, H/8, W/8); ``None`` after an I-frame.
    * ``unet_feats``: the previous frame's U-Net down-block 0..2 outputs (the TCG diffusion buffer); never reset.
    * ``frame_index``: index of the next frame to code; ``p_index``: P-frames since the last I-frame.
    * ``latent_offset``: the last latent offset a unit carried (1, latent, 1, 1), added to x0 before the output
      VAE decode only; ``None`` when the model has none or the last I-frame carried none.
    * ``rate``: rate point of the previous frame; ``width``/``height``: original (unpadded) frame size.
    """

    width: int
    height: int
    rate: int = 0
    frame_index: int = 0
    p_index: int = 0
    ref_frame: Tensor | None = None
    ref_feature: Tensor | None = None
    unet_feats: tuple[Tensor, ...] | None = None
    latent_offset: Tensor | None = None

    @property
    def has_reference(self) -> bool:
        return self.ref_frame is not None

    def replace(self, **changes: object) -> "StreamState":
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str) -> "StreamState":
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        feats = None if self.unet_feats is None else tuple(f.to(device) for f in self.unet_feats)
        return self.replace(
            ref_frame=move(self.ref_frame), ref_feature=move(self.ref_feature), unet_feats=feats, latent_offset=move(self.latent_offset)
        )

    def check(self) -> int:
        """A 32-bit check of the decoder state that the next P-frame is coded against.

        CRC-32 over the counters and the exact float32 bytes of ``ref_frame`` (the previous x0 latent). That
        latent is computed from everything else in the buffer (inter feature, U-Net features), so any drift
        there shows here too, while hashing it stays cheap at any resolution. Encoder and decoder compute it on
        their own copies; a lost unit, another backend or different arithmetic makes the P unit's check disagree.
        """
        crc = zlib.crc32(f"{self.frame_index}:{self.p_index}:{self.width}x{self.height}".encode())
        if self.ref_frame is not None:
            crc = zlib.crc32(self.ref_frame.detach().to("cpu", torch.float32).contiguous().numpy().tobytes(), crc)
        return crc & 0xFFFFFFFF
