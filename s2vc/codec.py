"""The step API: code one frame at a time against a :class:`~s2vc.state.StreamState`.

``Codec.encode_frame(state, frame, rate) -> EncodedFrame(unit, state, recon)`` and ``Codec.decode_frame(state, unit)
-> DecodedFrame(frame, state)``. The networks are reached only through :mod:`s2vc.protocol`; entropy coding runs on the CPU
in fp32/float64 (:mod:`s2vc.entropy`); units are framed by :mod:`s2vc.bitstream`.

Frame flow (see ``docs/bitstream.md`` for the payload layout):

* I-frame: VAE latent + RGB → intra encoder → y, z; FSQ(z) coded uniformly; y in four spatial passes with a
  quantised Gaussian; decoder side → U-Net (``iframe`` adapter, no temporal fusion) → x0 latent → VAE decode.
* P-frame: context from the buffer (``ref_feature``, or ``ref_frame`` on a reset) → inter encoder → y, z;
  z with the factorised prior, y in two checkerboard passes; decoder → U-Net (``pframe`` adapter, TCG fusion
  with the previous U-Net features) → x0 → VAE decode.
* Latent offset (presets with ``latent_offset_step``): a unit may end with one offset per latent channel, the
  mean of the source latent less the mean of x0; the decoder keeps the last one and adds it to x0 before the
  output VAE decode only.
"""

from __future__ import annotations

import contextlib
import struct
import time
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import entropy
from .bitstream import FLAG_OFFSET, FLAG_RESET, SequenceParams, Unit, UnitType
from .errors import (
    CorruptStreamError,
    InputError,
    ModelMismatchError,
    S2VCError,
    StateMismatchError,
    UnitOrderError,
)
from .limits import FrameLimits
from .networks.inter import checkerboard_masks
from .networks.intra import intra_pass_masks
from .protocol import ModelNetworks
from .state import StreamState

ALIGN = 64  # frames are padded to a multiple of this
INTRA_Y_RANGE = (-255, 255)  # I-frame y symbols (clamped; the release's estimate does not clamp)
INTER_Y_RANGE = (-128, 127)  # P-frame y symbols, as the release clamps them
INTER_Z_RANGE = (-128, 127)  # P-frame z symbols (stored as int8 by the release)
LATENT_OFFSET_MAX = 15  # latent offset symbols lie in -15 .. 15 steps (docs/bitstream.md, "Latent offset")
#: P-frames between latent offsets by default: on 10 frames of foreman every 4th leaves 2.0 levels of red cast where
#: every one leaves 1.1 and every 8th 3.0, and saves the encoder 3 of 4 VAE encodes (docs/bitstream.md).
DEFAULT_OFFSET_INTERVAL = 4
MAX_SIDE = 16384
#: Threads the networks run with whose outputs decoding depends on (everything but the encoder's analysis
#: transforms and the output VAE decode). A float kernel's reduction order depends on its thread count (the
#: U-Net's group norms and some 1x1 convolutions do), and the entropy parameters are computed from the stream
#: state those networks produce; fixing their thread count on both sides makes a stream decode the same for
#: any ``--threads``. Part of the format's determinism contract (docs/bitstream.md, "Determinism").
STATE_THREADS = 1


@contextlib.contextmanager
def fixed_threads(n: int | None):
    """Run torch's intra-op work with ``n`` threads inside the block (``None``: leave the setting alone)."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def padded_size(height: int, width: int) -> tuple[int, int]:
    return height + (-height) % ALIGN, width + (-width) % ALIGN


def batch_key(state: StreamState) -> tuple[int, int]:
    """The batch key a stream brings: its padded (height, width). Only streams with the same key can share one
    :meth:`Codec.encode_batch`/:meth:`Codec.decode_batch` stack (a scheduler batches by it); within a call the
    codec groups their frames further by frame type, reset and rate point."""
    return padded_size(state.height, state.width)


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
    context: bytes = b""  # the unit's fields that seed the symbol check (:func:`unit_context`)
    offset: np.ndarray | None = None  # latent offset symbols (one per latent channel), when the unit carries them

    def symbol_check(self) -> int:
        """CRC-32 of the unit's context (type, flags, rate, frame index, picture size) and every coded symbol."""
        crc = zlib.crc32(self.context)
        extra = () if self.offset is None else (self.offset,)
        for a in (self.z, *(symbols for symbols, _ in self.y_passes), *extra):
            crc = zlib.crc32(np.ascontiguousarray(np.asarray(a), dtype="<i4").tobytes(), crc)
        return crc & 0xFFFFFFFF

    def entropy_check(self) -> int:
        """CRC-32 of the quantised entropy parameters: every y symbol's scale index (u8), in coding order."""
        crc = 0
        for _, idx in self.y_passes:
            crc = zlib.crc32(np.ascontiguousarray(np.asarray(idx), dtype=np.uint8).tobytes(), crc)
        return crc & 0xFFFFFFFF


def unit_context(unit_type: int, flags: int, rate: int, frame_index: int, width: int, height: int) -> bytes:
    """The bytes that seed a payload's symbol check (docs/bitstream.md): a unit edited in any of these fields, or
    decoded under another picture size, fails its check instead of producing a wrong picture."""
    return struct.pack(">BBBIHH", int(unit_type), flags, rate, frame_index, width, height)


DEFAULT_RESET_INTERVAL = 32  # the release's P-frames between context re-anchors


class Codec:
    """Encoder and decoder of one model. Holds no stream state: every call takes and returns a StreamState.

    ``reset_interval``: P-frames between context re-anchors; ``None`` takes the model's own recommendation, else
    32 as in the release. ``intra_period``: an I-frame every that many frames (0 = only the first).
    ``limits``: the largest picture accepted (checked before anything is allocated; default
    :class:`~s2vc.limits.FrameLimits`, overridable by ``S2VC_MAX_WIDTH``/``S2VC_MAX_HEIGHT``/``S2VC_MAX_PIXELS``).
    ``state_threads``: torch threads of the networks decoding depends on (:data:`STATE_THREADS`; the same on
    both sides, or streams decode only on the thread setting that made them). Every other network uses
    torch's current setting.
    ``offset_interval`` (models whose preset has a ``latent_offset_step``): the encoder sends the latent offset
    with every I-frame and with every ``offset_interval``-th P-frame (0: I-frames only; None: never, the stream
    then decodes as without the tool). A P-frame that sends it costs the encoder one VAE encode; the decoder keeps
    the last one it received.
    """

    def __init__(
        self,
        model: ModelNetworks,
        device: str | torch.device | None = None,
        *,
        reset_interval: int | None = None,
        intra_period: int = 0,
        limits: FrameLimits | None = None,
        state_threads: int | None = STATE_THREADS,
        offset_interval: int | None = DEFAULT_OFFSET_INTERVAL,
    ) -> None:
        if reset_interval is None:
            reset_interval = getattr(model, "reset_interval", None) or DEFAULT_RESET_INTERVAL
        if reset_interval < 1:
            raise ValueError("reset_interval must be at least 1")
        if intra_period < 0:
            raise ValueError("intra_period must be 0 (off) or positive")
        if offset_interval is not None and offset_interval < 0:
            raise ValueError("offset_interval must be None (never), 0 (I-frames only) or positive")
        self.model = model
        self.device = torch.device(device) if device is not None else getattr(model, "device", torch.device("cpu"))
        self.reset_interval = reset_interval
        self.intra_period = intra_period
        self.limits = limits if limits is not None else FrameLimits.from_env()
        self.state_threads = state_threads
        self.offset_interval = offset_interval
        self.offset_step = float(getattr(model.preset, "latent_offset_step", 0.0))
        # the latent offset's symbols: one per latent channel, uniform over -LATENT_OFFSET_MAX..LATENT_OFFSET_MAX
        self._offset_model = entropy.UniformModel([2 * LATENT_OFFSET_MAX + 1] * model.preset.vae.latent_channels)
        self._gaussian = {r: entropy.GaussianModel(*r) for r in (INTRA_Y_RANGE, INTER_Y_RANGE)}
        # when set, called with (stage, seconds, batch size) for the stages vae, networks, unet and entropy
        self.on_stage: StageCallback | None = None

    # ----------------------------------------------------------------- streams
    def new_state(self, width: int, height: int, rate: int = 0) -> StreamState:
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise InputError(f"frame size {width}x{height} is outside 1..{MAX_SIDE}")
        self.limits.check(width, height)
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
        """Raise ModelMismatchError unless ``params`` (a file header or SEQ unit) was made by this model, and
        :class:`~s2vc.errors.LimitError` when its picture exceeds :attr:`limits` (before anything is allocated)."""
        self.limits.check(params.width, params.height)
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
    def encode_frame(
        self, state: StreamState, frame: np.ndarray | Tensor, rate: int | None = None, *, force_intra: bool = False, reconstruct: bool = True
    ) -> EncodedFrame:
        """Code one uint8 RGB frame. Returns the unit, the new state and (if ``reconstruct``) the decoded frame."""
        return _unwrap(self.encode_batch([state], [frame], [rate], force_intra=[force_intra], reconstruct=reconstruct)[0])

    @torch.inference_mode()
    def encode_batch(
        self,
        states: Sequence[StreamState],
        frames: Sequence[np.ndarray | Tensor],
        rates: Sequence[int | None] | None = None,
        *,
        force_intra: Sequence[bool] | None = None,
        reconstruct: bool = True,
        exact: bool = True,
    ) -> list[EncodedFrame | S2VCError]:
        """Code one frame of each of several streams in one call (a server's scheduler tick).

        Slot ``i`` holds ``(unit, new_state, recon)`` for stream ``i`` or the :class:`S2VCError` its input raised;
        one bad item never fails the others. Items of the same padded size, frame type and rate point are grouped.
        Float kernels are not batch-invariant (a stacked batch differs from batch 1 in the last bits), so with
        ``exact`` (the default) everything a decoder recomputes (entropy parameters, synthesis, U-Net, the
        output VAE decode) runs one item at a time: every unit decodes bit-exactly in a decoder that codes one
        frame at a time (the CLI, another server) and ``recon`` is what that decoder outputs. Only the
        encoder's analysis transforms run stacked; their output is quantised and sent, never recomputed, so a
        unit may differ from :meth:`encode_frame`'s in a symbol that a last-bit difference rounds the other
        way, and is still a valid unit of the same stream. ``exact=False`` stacks every network: fastest, and
        decodable exactly only by a decoder that stacks the same streams the same way (a server's preview).
        """
        n = len(states)
        rates = [None] * n if rates is None else list(rates)
        force_intra = [False] * n if force_intra is None else list(force_intra)
        if not len(frames) == len(rates) == len(force_intra) == n:
            raise ValueError("encode_batch needs one frame, rate and force_intra per state")
        results: list[EncodedFrame | S2VCError | None] = [None] * n
        items: list[_EncodeItem] = []
        for slot, (state, frame, rate, intra) in enumerate(zip(states, frames, rates, force_intra)):
            try:
                items.append(self._encode_item(slot, state, frame, rate, intra))
            except S2VCError as exc:
                results[slot] = exc
        for group in _groups(items):
            for item, result in zip(group, self._encode_group(group, reconstruct, exact)):
                results[item.slot] = result
        return results  # type: ignore[return-value]

    def _encode_item(self, slot: int, state: StreamState, frame, rate: int | None, force_intra: bool) -> _EncodeItem:
        rate = state.rate if rate is None else rate
        self._check_rate(rate)
        if frame.shape[0] != state.height or frame.shape[1] != state.width:
            raise InputError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the stream is {state.width}x{state.height}")
        x = pad_to_multiple(frame_to_tensor(frame, self.device))
        intra = force_intra or self.is_intra(state)
        reset = not intra and state.p_index % self.reset_interval == 0
        return _EncodeItem(slot, state, rate, intra, reset, x)

    def _encode_group(self, group: list[_EncodeItem], reconstruct: bool, exact: bool) -> list[EncodedFrame]:
        first, n = group[0], len(group)
        nets = self.model.rate(first.rate)
        x = torch.cat([item.x for item in group])
        x0_parts, symbols, new_states = [], [], []
        latent = None
        if first.intra:
            with self._stage("vae", n):
                latent = self.model.vae.encode(x)
            with self._stage("networks", n):
                y, z = nets.intra.encode(x, latent)
            for part in _chunks(n, exact):
                with fixed_threads(self.state_threads):
                    z_hat, index = self._run("networks", len(group[part]), nets.intra.quantize_z, z[part].float())
                    passes, x0, feats = self._intra_synthesis(nets, z_hat, y[part].float(), None)
                z_symbols = index.to(torch.int32).cpu().numpy().reshape(index.shape[0], index.shape[1], -1)
                symbols += [_Symbols(z_symbols[i], [p[i] for p in passes]) for i in range(len(z_symbols))]
                x0_parts.append(x0)
                new_states += [self._after_intra(item.state, item.rate, x0[i : i + 1], _item_feats(feats, i)) for i, item in enumerate(group[part])]
            unit_type, flags = UnitType.I, 0
        else:
            contexts = []
            for item in group:  # the context runs one stream at a time, in the encoder and the decoder alike
                with fixed_threads(self.state_threads):
                    contexts.append(self._run("networks", 1, nets.inter.context, item.state.ref_frame, item.state.ref_feature, first.reset))
            ctx_all = torch.cat([c for c, _ in contexts])
            with self._stage("networks", n):
                y, z = nets.inter.encode(x, ctx_all)
            z_hat_all = torch.round(z.float()).nan_to_num_(0.0, INTER_Z_RANGE[1], INTER_Z_RANGE[0]).clamp_(*INTER_Z_RANGE)
            for part in _chunks(n, exact):
                ctx, ctx_t = ctx_all[part], torch.cat([t for _, t in contexts[part]])
                z_hat = z_hat_all[part]
                with fixed_threads(self.state_threads):
                    passes, feature, x0, feats = self._inter_synthesis(nets, z_hat, ctx, ctx_t, y[part].float(), None, group[part])
                z_symbols = z_hat.to(torch.int32).cpu().numpy().reshape(z_hat.shape[0], z_hat.shape[1], -1)
                symbols += [_Symbols(z_symbols[i], [p[i] for p in passes]) for i in range(len(z_symbols))]
                x0_parts.append(x0)
                new_states += [
                    self._after_inter(item.state, item.rate, x0[i : i + 1], feature[i : i + 1], _item_feats(feats, i))
                    for i, item in enumerate(group[part])
                ]
            unit_type, flags = UnitType.P, FLAG_RESET if first.reset else 0
        x0 = torch.cat(x0_parts)
        offsets = self._latent_offsets(group, x, latent, x0)
        item_flags = [flags | (FLAG_OFFSET if offset is not None else 0) for offset in offsets]
        for i, offset in enumerate(offsets):
            if offset is not None:
                symbols[i].offset = offset
                new_states[i] = new_states[i].replace(latent_offset=self._offset_tensor(offset))
        with self._stage("entropy", n):
            for item, sym, item_flag in zip(group, symbols, item_flags):
                sym.context = unit_context(unit_type, item_flag, item.rate, item.state.frame_index, item.state.width, item.state.height)
            payloads = [self._write_payload(unit_type, sym, first.rate) for sym in symbols]
        units = [
            Unit(type=unit_type, flags=item_flag, rate=item.rate, frame_index=item.state.frame_index, state_check=sym.entropy_check(), payload=payload)
            for item, item_flag, sym, payload in zip(group, item_flags, symbols, payloads)
        ]
        recons = self._reconstruct(x0, new_states, exact) if reconstruct else [None] * n
        return [EncodedFrame(*result) for result in zip(units, new_states, recons)]

    def _latent_offsets(self, group: list[_EncodeItem], x: Tensor, latent: Tensor | None, x0: Tensor) -> list[np.ndarray | None]:
        """Per item, the latent offset symbols it sends, or None: round((mean source latent − mean x0) / step) per
        channel over the latent cells of the picture (padding excluded), clamped to ±LATENT_OFFSET_MAX."""
        if not self.offset_step or self.offset_interval is None:
            return [None] * len(group)
        sends = [item.intra or (self.offset_interval > 0 and item.state.p_index % self.offset_interval == 0) for item in group]
        if not any(sends):
            return [None] * len(group)
        if latent is None:
            with self._stage("vae", len(group)):
                latent = self.model.vae.encode(x)
        out: list[np.ndarray | None] = []
        for i, (item, send) in enumerate(zip(group, sends)):
            if not send:
                out.append(None)
                continue
            h8, w8 = -(-item.state.height // 8), -(-item.state.width // 8)
            gap = (latent[i, :, :h8, :w8].double() - x0[i, :, :h8, :w8].double()).mean(dim=(1, 2))
            q = torch.round(gap / self.offset_step).nan_to_num_(0.0).clamp_(-LATENT_OFFSET_MAX, LATENT_OFFSET_MAX)
            out.append(q.to(torch.int32).cpu().numpy())
        return out

    def _offset_tensor(self, symbols: np.ndarray) -> Tensor:
        """Offset symbols → the (1, latent, 1, 1) float32 offset a state keeps."""
        return torch.from_numpy(symbols.astype(np.float32) * np.float32(self.offset_step)).view(1, -1, 1, 1).to(self.device)

    def _intra_synthesis(self, nets, z_hat: Tensor, y: Tensor | None, readers):
        """Decoder side of an I-frame from z_hat: the four y passes, synthesis and U-Net → (passes, x0, feats)."""
        y_hat, passes, z_semantic = self._intra_passes(nets, z_hat, y, readers)
        x0, feats = self._intra_finish(nets, y_hat, z_semantic)
        return passes, x0, feats

    def _intra_finish(self, nets, y_hat: Tensor, z_semantic: Tensor):
        with self._stage("networks", len(y_hat)):
            f_pix, tokens = nets.intra.decode(y_hat, z_semantic)
        return self._run("unet", len(y_hat), nets.unet, f_pix, tokens, None, "iframe")

    def _inter_synthesis(self, nets, z_hat: Tensor, ctx: Tensor, ctx_t: Tensor, y: Tensor | None, readers, items):
        """Decoder side of a P-frame: the two y passes, synthesis and U-Net with TCG → (passes, feature, x0, feats)."""
        y_hat, passes = self._inter_passes(nets, z_hat, ctx_t, y, readers)
        feature, x0, feats = self._inter_finish(nets, y_hat, ctx, items)
        return passes, feature, x0, feats

    def _inter_finish(self, nets, y_hat: Tensor, ctx: Tensor, items):
        with self._stage("networks", len(y_hat)):
            feature, f_pix, tokens = nets.inter.decode(y_hat, ctx)
        prev = _stack_feats([item.state.unet_feats for item in items])
        x0, feats = self._run("unet", len(y_hat), nets.unet, f_pix, tokens, prev, "pframe")
        return feature, x0, feats

    def _intra_passes(self, nets, z_hat: Tensor, y: Tensor | None, readers) -> tuple[Tensor, list, Tensor]:
        """The four spatial passes of an I-frame; encodes ``y`` or, with ``readers`` (one per item), decodes."""
        with self._stage("networks", len(z_hat)):
            params, reduced, z_semantic = nets.intra.hyper_decode(z_hat)
        params = params.float()
        shape = (params.shape[0], params.shape[1] // 2, params.shape[2], params.shape[3])
        masks = intra_pass_masks(shape[1], shape[2], shape[3], device=params.device)
        y_hat = torch.zeros(shape, device=params.device)
        passes = []
        for k in range(4):
            if k == 0:
                scales, means = params.chunk(2, 1)
            else:
                scales, means = self._run("networks", len(z_hat), nets.intra.spatial_prior, k, y_hat, reduced)
            sel = masks[k].bool().unsqueeze(0).expand(shape)
            y_hat, pass_symbols = self._code_pass(y, y_hat, sel, scales, means, INTRA_Y_RANGE, readers)
            passes.append(pass_symbols)
        return y_hat, passes, z_semantic

    def _code_pass(self, y: Tensor | None, y_hat: Tensor, sel: Tensor, scales: Tensor, means: Tensor, symbol_range, readers):
        """One masked pass: quantise ``y`` (encoder) or read each item's symbols (decoder); add it to ``y_hat``.

        Returns the new ``y_hat`` and, per item of the batch, ``(symbols, scale indices)`` in coding order.
        """
        with self._stage("entropy", len(y_hat)):
            means = entropy.round_means(means.float()) if self.model.preset.round_means else means.float()
            idx_all = entropy.scale_index(scales.float())
            idx = [idx_all[i][sel[i]].cpu().numpy() for i in range(len(y_hat))]
            if readers is None:
                lo, hi = symbol_range  # non-finite values (a diverged model) become codable symbols, not a crash
                q = torch.round(y - means).nan_to_num_(0.0, hi, lo).clamp_(lo, hi)
                symbols = [q[i][sel[i]].to(torch.int32).cpu().numpy() for i in range(len(y_hat))]
            else:
                symbols = [read(symbol_range, item_idx) for read, item_idx in zip(readers, idx)]
                q = torch.zeros_like(y_hat)
                for i, item_symbols in enumerate(symbols):
                    q[i][sel[i]] = torch.from_numpy(item_symbols.astype(np.float32)).to(q.device)
        return y_hat + torch.where(sel, q + means, torch.zeros_like(q)), list(zip(symbols, idx))

    def _inter_passes(self, nets, z_hat: Tensor, ctx_t: Tensor, y: Tensor | None, readers) -> tuple[Tensor, list]:
        """The two checkerboard passes of a P-frame; encodes ``y`` or, with ``readers``, decodes."""
        q_dec, scales, means, params = self._run("networks", len(z_hat), nets.inter.prior, z_hat, ctx_t)
        q_dec = q_dec.float()
        mask_a, mask_b = checkerboard_masks(q_dec.shape[1], q_dec.shape[2], q_dec.shape[3], device=q_dec.device)
        y_scaled = y * torch.reciprocal(q_dec) if y is not None else None
        y_hat = torch.zeros_like(q_dec)
        passes = []
        for k, mask in enumerate((mask_a, mask_b)):
            if k == 1:
                scales, means = self._run("networks", len(z_hat), nets.inter.spatial_prior, y_hat, params)
            y_hat, pass_symbols = self._code_pass(y_scaled, y_hat, mask.bool().expand_as(q_dec), scales, means, INTER_Y_RANGE, readers)
            passes.append(pass_symbols)
        return y_hat * q_dec, passes

    def _write_payload(self, unit_type: UnitType, symbols: _Symbols, rate: int) -> bytes:
        enc = entropy.new_encoder()
        if unit_type == UnitType.I:
            entropy.UniformModel(self._fsq_levels(symbols.z.shape[0])).encode(enc, symbols.z)
            gauss = self._gaussian[INTRA_Y_RANGE]
        else:
            entropy.CategoricalModel(self._z_pmf(rate), INTER_Z_RANGE[0]).encode(enc, symbols.z)
            gauss = self._gaussian[INTER_Y_RANGE]
        for values, idx in symbols.y_passes:
            gauss.encode(enc, values, idx)
        if symbols.offset is not None:
            self._offset_model.encode(enc, (symbols.offset + LATENT_OFFSET_MAX).reshape(-1, 1))
        return struct.pack(">I", symbols.symbol_check()) + entropy.encoder_bytes(enc)

    def _z_pmf(self, rate: int):
        with fixed_threads(self.state_threads):
            return self.model.z_pmf(rate, *INTER_Z_RANGE)

    def _fsq_levels(self, channels: int) -> list[int]:
        levels = list(self.model.preset.intra.fsq_levels)
        if len(levels) != channels:
            raise ModelMismatchError(f"FSQ has {len(levels)} channels, the stream {channels}")
        return levels

    def _after_intra(self, state: StreamState, rate: int, x0: Tensor, feats) -> StreamState:
        return state.replace(
            rate=rate, frame_index=state.frame_index + 1, p_index=0, ref_frame=x0, ref_feature=None, unet_feats=tuple(feats), latent_offset=None
        )

    def _after_inter(self, state: StreamState, rate: int, x0: Tensor, feature: Tensor, feats) -> StreamState:
        return state.replace(
            rate=rate, frame_index=state.frame_index + 1, p_index=state.p_index + 1, ref_frame=x0, ref_feature=feature, unet_feats=tuple(feats)
        )

    def _reconstruct(self, x0: Tensor, states: Sequence[StreamState], exact: bool) -> list[np.ndarray]:
        """The output VAE decode of x0 plus each stream's latent offset (one item at a time when ``exact``), cropped
        per stream. ``states`` are the streams' states after this frame."""
        if any(s.latent_offset is not None for s in states):
            none = x0.new_zeros(1, x0.shape[1], 1, 1)
            x0 = x0 + torch.cat([none if s.latent_offset is None else s.latent_offset.to(x0) for s in states])
        pictures = [self._run("vae", len(x0[part]), self.model.vae.decode, x0[part]) for part in _chunks(len(x0), exact)]
        return [tensor_to_frame(row, s.height, s.width) for row, s in zip(_rows(pictures), states)]

    # ----------------------------------------------------------------- decode
    def decode_frame(self, state: StreamState, unit: Unit) -> DecodedFrame:
        """Decode an I or P unit. Raises the documented errors of ``docs/bitstream.md``; never returns noise."""
        return _unwrap(self.decode_batch([state], [unit])[0])

    @torch.inference_mode()
    def decode_batch(
        self, states: Sequence[StreamState], units: Sequence[Unit], *, exact: bool = True
    ) -> list[DecodedFrame | S2VCError]:
        """Decode one unit of each of several streams in one call; slot ``i`` holds ``(frame, new_state)`` or the
        :class:`S2VCError` that unit raised (see :meth:`encode_batch` for ``exact``)."""
        if len(units) != len(states):
            raise ValueError("decode_batch needs one unit per state")
        results: list[DecodedFrame | S2VCError | None] = [None] * len(states)
        items: list[_DecodeItem] = []
        for slot, (state, unit) in enumerate(zip(states, units)):
            try:
                items.append(self._decode_item(slot, state, unit))
            except S2VCError as exc:
                results[slot] = exc
        for group in _groups(items):
            for part in _chunks(len(group), exact):
                try:
                    done = self._decode_part(group[part])
                except S2VCError as exc:  # one unit's payload is unreadable: decode the others one at a time
                    done = [exc] if len(group[part]) == 1 else [self._decode_one(item) for item in group[part]]
                for item, result in zip(group[part], done):
                    results[item.slot] = result
            decoded = [item.slot for item in group if isinstance(results[item.slot], tuple)]
            if decoded:  # the output VAE decode of the group, stacked
                x0 = torch.cat([results[slot][0] for slot in decoded])  # type: ignore[index]
                frames = self._reconstruct(x0, [results[slot][1] for slot in decoded], exact)  # type: ignore[index]
                for slot, frame in zip(decoded, frames):
                    results[slot] = DecodedFrame(frame, results[slot][1])  # type: ignore[index]
        return results  # type: ignore[return-value]

    def _decode_one(self, item: _DecodeItem) -> tuple[Tensor, StreamState] | S2VCError:
        try:
            return self._decode_part([item])[0]
        except S2VCError as exc:
            return exc

    def _decode_item(self, slot: int, state: StreamState, unit: Unit) -> _DecodeItem:
        """Check a unit against its stream's state (type, order, rate) before any network runs."""
        if unit.type not in (UnitType.I, UnitType.P):
            raise UnitOrderError(f"decode_frame takes I or P units, got {unit.type.name}")
        self.limits.check(state.width, state.height)  # a state built by hand, not by new_state
        self._check_rate(unit.rate)
        if unit.frame_index < state.frame_index:
            raise UnitOrderError(f"unit for frame {unit.frame_index} arrived after frame {state.frame_index - 1} (repeated or reordered)")
        if len(unit.payload) < 4:
            raise CorruptStreamError(f"{unit.type.name} unit payload of {len(unit.payload)} bytes is shorter than its 4-byte symbol check")
        if unit.flags & FLAG_OFFSET and not self.offset_step:
            raise CorruptStreamError(f"frame {unit.frame_index} carries a latent offset, which model {self.model.model_id!r} does not use")
        intra = unit.type == UnitType.I
        if intra:
            if unit.frame_index != state.frame_index:
                state = state.replace(frame_index=unit.frame_index)  # an I-frame resynchronises after a loss
        else:
            if not state.has_reference:
                raise UnitOrderError(f"P unit for frame {unit.frame_index} without a preceding I unit")
            if unit.frame_index != state.frame_index:
                raise UnitOrderError(f"P unit for frame {unit.frame_index}, expected frame {state.frame_index}: a unit is missing")
        return _DecodeItem(slot, state, unit.rate, intra, bool(unit.flags & FLAG_RESET) and not intra, unit)

    def _decode_part(self, items: list[_DecodeItem]) -> list[tuple[Tensor, StreamState] | S2VCError]:
        """Decode stacked units of one group (same size, type and rate) → per item (x0, new state) or its error.

        The symbols and the entropy parameters are checked right after entropy decoding, before the synthesis
        networks run: a unit that fails produces no picture and leaves its stream's state as it was.
        """
        first, n = items[0], len(items)
        nets = self.model.rate(first.rate)
        hp, wp = batch_key(first.state)
        h64, w64 = hp // 64, wp // 64
        decoders = [entropy.new_decoder(item.unit.payload[4:]) for item in items]
        readers = [self._reader(dec) for dec in decoders]
        with self._stage("entropy", n):
            if first.intra:
                levels = list(self.model.preset.intra.fsq_levels)
                z = [entropy.UniformModel(levels).decode(dec, h64 * w64) for dec in decoders]
                index = torch.from_numpy(np.stack(z).astype(np.int64)).reshape(n, len(levels), h64, w64).to(self.device)
            else:
                pmf = self._z_pmf(first.rate)
                z = [entropy.CategoricalModel(pmf, INTER_Z_RANGE[0]).decode(dec, h64 * w64) for dec in decoders]
                z_hat = torch.from_numpy(np.stack(z).astype(np.float32)).reshape(n, pmf.shape[0], h64, w64).to(self.device)
        with fixed_threads(self.state_threads):
            if first.intra:
                z_hat = self._run("networks", n, nets.intra.dequantize_z, index)
                y_hat, passes, z_semantic = self._intra_passes(nets, z_hat, None, readers)
            else:
                contexts = [self._run("networks", 1, nets.inter.context, it.state.ref_frame, it.state.ref_feature, first.reset) for it in items]
                ctx, ctx_t = torch.cat([c for c, _ in contexts]), torch.cat([t for _, t in contexts])
                y_hat, passes = self._inter_passes(nets, z_hat, ctx_t, None, readers)
            offsets = [
                self._offset_model.decode(dec, 1)[:, 0] - LATENT_OFFSET_MAX if item.unit.flags & FLAG_OFFSET else None
                for item, dec in zip(items, decoders)
            ]
            problems = [self._verify(item, _Symbols(z[i], [p[i] for p in passes], offset=offsets[i])) for i, item in enumerate(items)]
            if all(problems):
                return problems  # type: ignore[return-value]
            if first.intra:
                x0, feats = self._intra_finish(nets, y_hat, z_semantic)
            else:
                feature, x0, feats = self._inter_finish(nets, y_hat, ctx, items)
        results: list[tuple[Tensor, StreamState] | S2VCError] = []
        for i, (item, problem) in enumerate(zip(items, problems)):
            if problem is not None:
                results.append(problem)
                continue
            if first.intra:
                new_state = self._after_intra(item.state, item.rate, x0[i : i + 1], _item_feats(feats, i))
            else:
                new_state = self._after_inter(item.state, item.rate, x0[i : i + 1], feature[i : i + 1], _item_feats(feats, i))
            if offsets[i] is not None:
                new_state = new_state.replace(latent_offset=self._offset_tensor(offsets[i]))
            results.append((x0[i : i + 1], new_state))
        return results

    def _verify(self, item: _DecodeItem, symbols: _Symbols) -> S2VCError | None:
        """The unit's entropy-parameter check, then its symbol check (docs/bitstream.md, "Checks")."""
        unit, state = item.unit, item.state
        ours = symbols.entropy_check()
        if ours != unit.state_check:
            return StateMismatchError(
                f"frame {unit.frame_index} ({unit.type.name} unit) cannot be decoded here: this decoder computes other entropy "
                f"parameters than the encoder did (check {unit.state_check:08x}, here {ours:08x}). The stream was made by "
                "another engine, machine or thread setting, or by other weights under the same model identity",
                frame_index=unit.frame_index,
            )
        expected = struct.unpack(">I", unit.payload[:4])[0]
        symbols.context = unit_context(unit.type, unit.flags, unit.rate, unit.frame_index, state.width, state.height)
        if symbols.symbol_check() != expected:
            return CorruptStreamError(
                f"frame {unit.frame_index} ({unit.type.name} unit): the decoded symbols fail their check although the entropy "
                "parameters match: the unit's payload or fields, or the picture size in the header, were altered"
            )
        return None

    def _reader(self, dec):
        return lambda symbol_range, idx: self._gaussian[tuple(symbol_range)].decode(dec, idx)

    # ----------------------------------------------------------------- timing
    def _stage(self, stage: str, batch: int):
        return _StageTimer(self.on_stage, stage, batch) if self.on_stage is not None else contextlib.nullcontext()

    def _run(self, stage: str, batch: int, fn, *args):
        with self._stage(stage, batch):
            return fn(*args)


class EncodedFrame(NamedTuple):
    """One coded frame: the unit, the stream's new state and the decoder's picture (None without ``reconstruct``)."""

    unit: Unit
    state: StreamState
    recon: np.ndarray | None


class DecodedFrame(NamedTuple):
    """One decoded unit: the uint8 RGB picture and the stream's new state."""

    frame: np.ndarray
    state: StreamState

StageCallback = Callable[[str, float, int], None]


@dataclass
class _Item:
    """One stream's frame in a batch call; items with the same :attr:`key` are coded together."""

    slot: int
    state: StreamState
    rate: int
    intra: bool
    reset: bool

    @property
    def key(self) -> tuple:
        return (batch_key(self.state), self.intra, self.reset, self.rate)


@dataclass
class _EncodeItem(_Item):
    x: Tensor  # padded (1, 3, Hp, Wp)


@dataclass
class _DecodeItem(_Item):
    unit: Unit


def _groups(items: list) -> list[list]:
    """Items with the same key (padded size, frame type, reset, rate point), in order of first appearance."""
    groups: dict[tuple, list] = {}
    for item in items:
        groups.setdefault(item.key, []).append(item)
    return list(groups.values())


def _chunks(n: int, exact: bool) -> list[slice]:
    """Slices of a group that run the decoder loop together: one item each when exact, else all at once."""
    return [slice(i, i + 1) for i in range(n)] if exact else [slice(0, n)]


def _rows(parts: Sequence[Tensor]) -> list[Tensor]:
    """Batch rows of several stacked tensors, in order, each as a batch of one."""
    return [p[i : i + 1] for p in parts for i in range(len(p))]


def _item_feats(feats: Sequence[Tensor], i: int) -> tuple[Tensor, ...]:
    return tuple(f[i : i + 1] for f in feats)


def _stack_feats(per_item: Sequence[tuple[Tensor, ...] | None]) -> list[Tensor] | None:
    """The previous U-Net features of several streams stacked on the batch axis (None: no temporal fusion)."""
    if any(f is None for f in per_item):
        return None
    return [torch.cat(level) for level in zip(*per_item)]  # type: ignore[misc]


def _unwrap(result):
    if isinstance(result, S2VCError):
        raise result
    return result


class _StageTimer:
    def __init__(self, callback: StageCallback, stage: str, batch: int) -> None:
        self.callback, self.stage, self.batch = callback, stage, batch

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.callback(self.stage, time.perf_counter() - self.start, self.batch)
