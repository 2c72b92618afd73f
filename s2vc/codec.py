"""The step API: code one frame at a time against a :class:`~s2vc.state.StreamState`.

``Codec.encode_frame(state, frame, rate) -> (unit, state, recon)`` and ``Codec.decode_frame(state, unit) ->
(frame, state)``. The networks are reached only through :mod:`s2vc.protocol`; entropy coding runs on the CPU
in fp32/float64 (:mod:`s2vc.entropy`); units are framed by :mod:`s2vc.bitstream`.

Frame flow (see ``docs/bitstream.md`` for the payload layout):

* I-frame: VAE latent + RGB → intra encoder → y, z; FSQ(z) coded uniformly; y in four spatial passes with a
  quantised Gaussian; decoder side → U-Net (``iframe`` adapter, no temporal fusion) → x0 latent → VAE decode.
* P-frame: context from the buffer (``ref_feature``, or ``ref_frame`` on a reset) → inter encoder → y, z;
  z with the factorised prior, y in two checkerboard passes; decoder → U-Net (``pframe`` adapter, TCG fusion
  with the previous U-Net features) → x0 → VAE decode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import entropy
from .bitstream import SequenceParams, Unit, UnitType
from .errors import (
    CorruptStreamError,
    InputError,
    ModelMismatchError,
    StateMismatchError,
    UnitOrderError,
)
from .networks.inter import checkerboard_masks
from .networks.intra import intra_pass_masks
from .protocol import ModelNetworks
from .state import StreamState

ALIGN = 64  # frames are padded to a multiple of this
INTRA_Y_RANGE = (-255, 255)  # I-frame y symbols (clamped; the release's estimate does not clamp)
INTER_Y_RANGE = (-128, 127)  # P-frame y symbols, as the release clamps them
INTER_Z_RANGE = (-128, 127)  # P-frame z symbols (stored as int8 by the release)
FLAG_RESET = 0x01
MAX_SIDE = 16384


def padded_size(height: int, width: int) -> tuple[int, int]:
    return height + (-height) % ALIGN, width + (-width) % ALIGN


def pad_to_multiple(x: Tensor) -> Tensor:
    """Reflect-pad right/bottom to a multiple of 64 (replicate where the frame is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % ALIGN, (-w) % ALIGN
    if ph == 0 and pw == 0:
        return x
    while ph > 0 or pw > 0:  # reflect in steps no larger than the current size allows
        sh, sw = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        if sh <= 0 and sw <= 0:
            return F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = F.pad(x, (0, max(sw, 0), 0, max(sh, 0)), mode="reflect")
        ph, pw = ph - max(sh, 0), pw - max(sw, 0)
    return x


def frame_to_tensor(frame: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """uint8 (H, W, 3) RGB → float32 (1, 3, H, W) in [-1, 1]."""
    if isinstance(frame, Tensor):
        frame = frame.detach().cpu().numpy()
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}"
        raise InputError(f"a frame must be a uint8 RGB array of shape (height, width, 3); got {got}")
    x = torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1).unsqueeze(0)
    return x.float().div(127.5).sub(1.0)


def tensor_to_frame(x: Tensor, height: int, width: int) -> np.ndarray:
    """float (1, 3, Hp, Wp) in [-1, 1] → uint8 (H, W, 3), cropped, clamped and rounded half up."""
    x = x[0, :, :height, :width].float().clamp(-1.0, 1.0).add(1.0).mul(127.5).add(0.5).clamp(0, 255)
    return x.to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


@dataclass
class _Symbols:
    """Everything one frame writes, in coding order; also the symbol checksum."""

    z: np.ndarray
    y_passes: list[tuple[np.ndarray, np.ndarray]]  # (symbols, scale indices) per pass

    def checksum(self) -> int:
        return entropy.symbols_crc32([self.z, *(symbols for symbols, _ in self.y_passes)])


class Codec:
    """Encoder and decoder of one model. Holds no stream state: every call takes and returns a StreamState.

    ``reset_interval``: P-frames between context re-anchors (the release uses 32). ``intra_period``: an I-frame
    every that many frames (0 = only the first).
    """

    def __init__(self, model: ModelNetworks, device: str | torch.device | None = None, *, reset_interval: int = 32, intra_period: int = 0) -> None:
        if reset_interval < 1:
            raise ValueError("reset_interval must be at least 1")
        if intra_period < 0:
            raise ValueError("intra_period must be 0 (off) or positive")
        self.model = model
        self.device = torch.device(device) if device is not None else getattr(model, "device", torch.device("cpu"))
        self.reset_interval = reset_interval
        self.intra_period = intra_period
        self._gaussian = {r: entropy.GaussianModel(*r) for r in (INTRA_Y_RANGE, INTER_Y_RANGE)}

    # ----------------------------------------------------------------- streams
    def new_state(self, width: int, height: int, rate: int = 0) -> StreamState:
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise InputError(f"frame size {width}x{height} is outside 1..{MAX_SIDE}")
        self._check_rate(rate)
        return StreamState(width=width, height=height, rate=rate)

    def sequence_params(self, width: int, height: int, fps: float | Fraction = 25, rate: int = 0) -> SequenceParams:
        frac = Fraction(fps).limit_denominator(1001)
        return SequenceParams(
            model_id=self.model.model_id,
            weight_hash=self.model.weight_hash,
            rate=rate,
            width=width,
            height=height,
            fps_num=frac.numerator,
            fps_den=frac.denominator,
            reset_interval=self.reset_interval,
            intra_period=self.intra_period,
        )

    def check_sequence(self, params: SequenceParams) -> None:
        """Raise ModelMismatchError unless ``params`` (a file header or SEQ unit) was made by this model."""
        if params.model_id != self.model.model_id or params.weight_hash != self.model.weight_hash:
            raise ModelMismatchError(
                f"stream made by model {params.model_id!r} (weights {params.weight_hash.hex()}), "
                f"this decoder has {self.model.model_id!r} (weights {self.model.weight_hash.hex()})"
            )
        self._check_rate(params.rate)

    def _check_rate(self, rate: int) -> None:
        if not 0 <= rate < self.model.num_rates:
            raise ModelMismatchError(f"rate point {rate} is outside 0..{self.model.num_rates - 1} of model {self.model.model_id!r}")

    def is_intra(self, state: StreamState) -> bool:
        return not state.has_reference or (self.intra_period > 0 and state.frame_index % self.intra_period == 0)

    # ----------------------------------------------------------------- encode
    @torch.inference_mode()
    def encode_frame(
        self, state: StreamState, frame: np.ndarray | Tensor, rate: int | None = None, *, force_intra: bool = False, reconstruct: bool = True
    ) -> tuple[Unit, StreamState, np.ndarray | None]:
        """Code one uint8 RGB frame. Returns the unit, the new state and (if ``reconstruct``) the decoded frame."""
        rate = state.rate if rate is None else rate
        self._check_rate(rate)
        if frame.shape[0] != state.height or frame.shape[1] != state.width:
            raise InputError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the stream is {state.width}x{state.height}")
        x = pad_to_multiple(frame_to_tensor(frame, self.device))
        nets = self.model.rate(rate)
        if force_intra or self.is_intra(state):
            symbols, f_pix, tokens = self._intra_analysis(nets, x)
            x0, feats = nets.unet(f_pix, tokens, None, "iframe")
            unit_type, flags, check, new_state = UnitType.I, 0, 0, self._after_intra(state, rate, x0, feats)
        else:
            reset = state.p_index % self.reset_interval == 0
            symbols, feature, f_pix, tokens = self._inter_analysis(nets, rate, state, x, reset)
            x0, feats = nets.unet(f_pix, tokens, state.unet_feats, "pframe")
            unit_type, flags, check = UnitType.P, FLAG_RESET if reset else 0, state.check()
            new_state = self._after_inter(state, rate, x0, feature, feats)
        payload = self._write_payload(unit_type, symbols, rate)
        unit = Unit(type=unit_type, flags=flags, rate=rate, frame_index=state.frame_index, state_check=check, payload=payload)
        recon = tensor_to_frame(self.model.vae.decode(x0), state.height, state.width) if reconstruct else None
        return unit, new_state, recon

    def _intra_analysis(self, nets, x: Tensor) -> tuple[_Symbols, Tensor, Tensor]:
        latent = self.model.vae.encode(x)
        y, z = nets.intra.encode(x, latent)
        z_hat, index = nets.intra.quantize_z(z.float())
        y_hat, passes, z_semantic = self._intra_passes(nets, z_hat, y.float(), None)
        f_pix, tokens = nets.intra.decode(y_hat, z_semantic)
        return _Symbols(index.to(torch.int32).cpu().numpy().reshape(index.shape[1], -1), passes), f_pix, tokens

    def _intra_passes(self, nets, z_hat: Tensor, y: Tensor | None, read) -> tuple[Tensor, list, Tensor]:
        """The four spatial passes of an I-frame; encodes ``y`` or, with ``read``, decodes symbols."""
        params, reduced, z_semantic = nets.intra.hyper_decode(z_hat)
        params = params.float()
        shape = (params.shape[0], params.shape[1] // 2, params.shape[2], params.shape[3])
        masks = intra_pass_masks(shape[1], shape[2], shape[3], device=params.device)
        y_hat = torch.zeros(shape, device=params.device)
        passes = []
        for k in range(4):
            scales, means = params.chunk(2, 1) if k == 0 else nets.intra.spatial_prior(k, y_hat, reduced)
            sel = masks[k].bool().unsqueeze(0)
            y_hat, pass_symbols = self._code_pass(y, y_hat, sel, scales, means, INTRA_Y_RANGE, read)
            passes.append(pass_symbols)
        return y_hat, passes, z_semantic

    @staticmethod
    def _code_pass(y: Tensor | None, y_hat: Tensor, sel: Tensor, scales: Tensor, means: Tensor, symbol_range, read):
        """One masked pass: quantise ``y`` (encoder) or read symbols (decoder); add the pass to ``y_hat``."""
        means = entropy.round_means(means.float())
        idx = entropy.scale_index(scales.float())[sel].cpu().numpy()
        if read is None:
            lo, hi = symbol_range  # non-finite values (a diverged model) become codable symbols, not a crash
            q = torch.round(y - means).nan_to_num_(0.0, hi, lo).clamp_(lo, hi)
            symbols = q[sel].to(torch.int32).cpu().numpy()
        else:
            symbols = read(symbol_range, idx)
            q = torch.zeros_like(y_hat)
            q[sel] = torch.from_numpy(symbols.astype(np.float32)).to(q.device)
        return y_hat + torch.where(sel, q + means, torch.zeros_like(q)), (symbols, idx)

    def _inter_analysis(self, nets, rate: int, state: StreamState, x: Tensor, reset: bool):
        ctx, ctx_t = nets.inter.context(state.ref_frame, state.ref_feature, reset)
        y, z = nets.inter.encode(x, ctx)
        z_hat = torch.round(z.float()).nan_to_num_(0.0, INTER_Z_RANGE[1], INTER_Z_RANGE[0]).clamp_(*INTER_Z_RANGE)
        symbols_z = z_hat.to(torch.int32).cpu().numpy().reshape(z_hat.shape[1], -1)
        y_hat, passes = self._inter_passes(nets, z_hat, ctx_t, y.float(), None)
        feature, f_pix, tokens = nets.inter.decode(y_hat, ctx)
        return _Symbols(symbols_z, passes), feature, f_pix, tokens

    def _inter_passes(self, nets, z_hat: Tensor, ctx_t: Tensor, y: Tensor | None, read) -> tuple[Tensor, list]:
        """The two checkerboard passes of a P-frame; encodes ``y`` or, with ``read``, decodes symbols."""
        q_dec, scales, means, params = nets.inter.prior(z_hat, ctx_t)
        q_dec = q_dec.float()
        mask_a, mask_b = checkerboard_masks(q_dec.shape[1], q_dec.shape[2], q_dec.shape[3], device=q_dec.device)
        y_scaled = y * torch.reciprocal(q_dec) if y is not None else None
        y_hat = torch.zeros_like(q_dec)
        passes = []
        for k, mask in enumerate((mask_a, mask_b)):
            if k == 1:
                scales, means = nets.inter.spatial_prior(y_hat, params)
            y_hat, pass_symbols = self._code_pass(y_scaled, y_hat, mask.bool().expand_as(q_dec), scales, means, INTER_Y_RANGE, read)
            passes.append(pass_symbols)
        return y_hat * q_dec, passes

    def _write_payload(self, unit_type: UnitType, symbols: _Symbols, rate: int) -> bytes:
        enc = entropy.new_encoder()
        if unit_type == UnitType.I:
            entropy.UniformModel(self._fsq_levels(symbols.z.shape[0])).encode(enc, symbols.z)
            gauss = self._gaussian[INTRA_Y_RANGE]
        else:
            entropy.CategoricalModel(self.model.z_pmf(rate, *INTER_Z_RANGE), INTER_Z_RANGE[0]).encode(enc, symbols.z)
            gauss = self._gaussian[INTER_Y_RANGE]
        for values, idx in symbols.y_passes:
            gauss.encode(enc, values, idx)
        return struct.pack(">I", symbols.checksum()) + entropy.encoder_bytes(enc)

    def _fsq_levels(self, channels: int) -> list[int]:
        levels = list(self.model.preset.intra.fsq_levels)
        if len(levels) != channels:
            raise ModelMismatchError(f"FSQ has {len(levels)} channels, the stream {channels}")
        return levels

    def _after_intra(self, state: StreamState, rate: int, x0: Tensor, feats) -> StreamState:
        return state.replace(rate=rate, frame_index=state.frame_index + 1, p_index=0, ref_frame=x0, ref_feature=None, unet_feats=tuple(feats))

    def _after_inter(self, state: StreamState, rate: int, x0: Tensor, feature: Tensor, feats) -> StreamState:
        return state.replace(
            rate=rate, frame_index=state.frame_index + 1, p_index=state.p_index + 1, ref_frame=x0, ref_feature=feature, unet_feats=tuple(feats)
        )

    # ----------------------------------------------------------------- decode
    @torch.inference_mode()
    def decode_frame(self, state: StreamState, unit: Unit) -> tuple[np.ndarray, StreamState]:
        """Decode an I or P unit. Raises the documented errors of ``docs/bitstream.md``; never returns noise."""
        x0, new_state = self.decode_latent(state, unit)
        return tensor_to_frame(self.model.vae.decode(x0), state.height, state.width), new_state

    def decode_latent(self, state: StreamState, unit: Unit) -> tuple[Tensor, StreamState]:
        """Everything of :meth:`decode_frame` but the VAE decode: the x0 latent and the new state."""
        if unit.type not in (UnitType.I, UnitType.P):
            raise UnitOrderError(f"decode_frame takes I or P units, got {unit.type.name}")
        self._check_rate(unit.rate)
        if unit.frame_index < state.frame_index:
            raise UnitOrderError(f"unit for frame {unit.frame_index} arrived after frame {state.frame_index - 1} (repeated or reordered)")
        if len(unit.payload) < 4:
            raise CorruptStreamError(f"{unit.type.name} unit payload of {len(unit.payload)} bytes is shorter than its 4-byte symbol check")
        expected = struct.unpack(">I", unit.payload[:4])[0]
        dec = entropy.new_decoder(unit.payload[4:])
        nets = self.model.rate(unit.rate)
        hp, wp = padded_size(state.height, state.width)
        if unit.type == UnitType.I:
            if unit.frame_index != state.frame_index:
                state = state.replace(frame_index=unit.frame_index)  # an I-frame resynchronises after a loss
            x0, feats, symbols = self._decode_intra(nets, dec, hp, wp)
            self._verify(symbols, expected, unit)
            return x0, self._after_intra(state, unit.rate, x0, feats)
        if not state.has_reference:
            raise UnitOrderError(f"P unit for frame {unit.frame_index} without a preceding I unit")
        if unit.frame_index != state.frame_index:
            raise UnitOrderError(f"P unit for frame {unit.frame_index}, expected frame {state.frame_index}: a unit is missing")
        if unit.state_check != state.check():
            raise StateMismatchError(
                f"P unit for frame {unit.frame_index} was coded against another decoder state "
                f"(check {unit.state_check:08x}, this decoder {state.check():08x}); request an I-frame"
            )
        reset = bool(unit.flags & FLAG_RESET)
        ctx, ctx_t = nets.inter.context(state.ref_frame, state.ref_feature, reset)
        z_shape = (hp // 64, wp // 64)
        pmf = self.model.z_pmf(unit.rate, *INTER_Z_RANGE)
        z = entropy.CategoricalModel(pmf, INTER_Z_RANGE[0]).decode(dec, z_shape[0] * z_shape[1])
        z_hat = torch.from_numpy(z.astype(np.float32)).reshape(1, pmf.shape[0], *z_shape).to(self.device)
        y_hat, passes = self._inter_passes(nets, z_hat, ctx_t, None, self._reader(dec))
        self._verify(_Symbols(z, passes), expected, unit)
        feature, f_pix, tokens = nets.inter.decode(y_hat, ctx)
        x0, feats = nets.unet(f_pix, tokens, state.unet_feats, "pframe")
        return x0, self._after_inter(state, unit.rate, x0, feature, feats)

    def _decode_intra(self, nets, dec, hp: int, wp: int):
        levels = list(self.model.preset.intra.fsq_levels)
        h64, w64 = hp // 64, wp // 64
        index = entropy.UniformModel(levels).decode(dec, h64 * w64)
        z_hat = nets.intra.dequantize_z(torch.from_numpy(index.astype(np.int64)).reshape(1, len(levels), h64, w64).to(self.device))
        y_hat, passes, z_semantic = self._intra_passes(nets, z_hat, None, self._reader(dec))
        f_pix, tokens = nets.intra.decode(y_hat, z_semantic)
        x0, feats = nets.unet(f_pix, tokens, None, "iframe")
        return x0, feats, _Symbols(index, passes)

    def _reader(self, dec):
        return lambda symbol_range, idx: self._gaussian[tuple(symbol_range)].decode(dec, idx)

    @staticmethod
    def _verify(symbols: _Symbols, expected: int, unit: Unit) -> None:
        if symbols.checksum() != expected:
            raise StateMismatchError(
                f"{unit.type.name} unit for frame {unit.frame_index}: decoded symbols fail their check; the decoder's "
                "entropy parameters differ from the encoder's (another model, backend or a drifted state)"
            )
