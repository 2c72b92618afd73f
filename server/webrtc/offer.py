"""The body of ``POST /v1/webrtc/offer``: what a peer asks of its call (docs/webrtc.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..settings import DEFAULT_MODEL_NAME


class OfferSpec(BaseModel):
    """The body of POST /v1/webrtc/offer (docs/webrtc.md)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    sdp: str = Field(..., max_length=64 * 1024, description="The SDP offer, with its ICE candidates (no trickle ICE)")
    type: Literal["offer"] = "offer"
    mode: Literal["preview", "bitstream"] = Field(
        "preview", description="preview: video in, the S²VC reconstruction back as video plus a 'stats' data channel; "
        "bitstream: S²VC units on the 's2vc' data channel",
    )
    room: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Join this room (a call between parties)")
    role: Literal["publisher", "subscriber"] = Field("publisher", description="In a room: the one publisher, or a subscriber")
    rate: int = Field(0, ge=0, description="Starting rate point (0 = fewest bits)")
    target_kbps: float | None = Field(None, gt=0, le=1_000_000, description="Hold this bitrate by choosing the rate point per frame")
    max_width: int = Field(320, ge=16, le=16384, description="Incoming video is scaled down to fit (aspect kept)")
    max_height: int = Field(240, ge=16, le=16384)
    fps: float = Field(25.0, gt=0, description="Frame rate written to the sequence parameters")
    model: str = Field(DEFAULT_MODEL_NAME, description="A model name this server serves")
    checksum: bool = Field(False, description="bitstream: put the CRC-32 of each reconstruction in the stats (one more VAE decode per frame)")
