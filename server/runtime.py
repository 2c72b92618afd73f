"""The served models: each loaded once, wrapped in the configured engine, given a :class:`Codec`, warmed up.

Loading runs on the scheduler thread (the one thread that owns the device); the rest of the server only reads
the identity of a model (id, weight hash, rate points) and calls its pure-Python helpers (``new_state``,
``sequence_params``, ``check_sequence``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from s2vc.codec import Codec
from s2vc.limits import FrameLimits
from s2vc.errors import S2VCError

from .errors import InvalidRequest, NotFound, Unavailable
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("s2vc.server")

WARMUP_SIZE = 64  # warm-up frames are 64x64: every network and the entropy coder run once per frame type


class UnknownModelError(S2VCError):
    """A request named a model this server does not serve."""


@dataclass
class ServedModel:
    name: str
    codec: Codec

    @property
    def num_rates(self) -> int:
        return self.codec.model.num_rates

    def describe(self) -> dict[str, object]:
        m = self.codec.model
        return {"name": self.name, "model_id": m.model_id, "weight_hash": m.weight_hash.hex(), "rates": m.num_rates}


class Runtime:
    """Models by name. ``ready`` is set once every model is loaded and warm; ``error`` holds a load failure."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self.ready = threading.Event()
        self.error: str | None = None

    def load(self) -> None:
        """Load, wrap and warm every configured model (call on the device thread). Never raises."""
        from s2vc_engines import load_engine
        from s2vc.checkpoint import load_model

        s = self.settings
        try:
            if s.threads:
                import torch

                torch.set_num_threads(s.threads)
            for name, spec in s.model_specs.items():
                log.info("loading model %r (%s) with engine %s on %s", name, spec or "the shipped default", s.engine, s.device)
                networks = load_engine(s.engine, load_model(spec, device=s.device), device=s.device)
                limits = FrameLimits(max_width=s.max_width, max_height=s.max_height, max_pixels=s.max_frame_pixels)
                codec = Codec(
                    networks, s.device, reset_interval=s.reset_interval, intra_period=s.intra_period, limits=limits,
                    **({} if s.offset_interval is None else {"offset_interval": s.offset_interval}),
                )
                served = ServedModel(name, codec)
                self._warm_up(served)
                codec.on_stage = self.metrics.on_stage  # after the warm-up, so it does not count
                self.models[name] = served
            default = self.models[next(iter(s.model_specs))]
            self.metrics.engine.info({"engine": s.engine, "device": s.device, **{k: str(v) for k, v in default.describe().items()}})
            self.metrics.engine_ready.set(1)
            self.ready.set()
            log.info("engines ready: %s", ", ".join(f"{m.name} ({m.codec.model.model_id})" for m in self.models.values()))
        except Exception as exc:  # the server stays up and says why in /v2/health/ready
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the models failed")

    def for_request(self, name: str, rate: int) -> ServedModel:
        """The model a new session asks for, or the refusal: :class:`Unavailable` while loading, :class:`NotFound`
        for an unknown name, :class:`InvalidRequest` for a rate point the model does not have."""
        if not self.ready.is_set():
            raise Unavailable("the engines are still loading; retry shortly", retry_after=5)
        try:
            served = self.get(name)
        except UnknownModelError as exc:
            raise NotFound(str(exc)) from None
        if rate >= served.num_rates:
            raise InvalidRequest(f"rate point {rate} is outside 0..{served.num_rates - 1} of model {name!r}")
        return served

    def get(self, name: str) -> ServedModel:
        if name not in self.settings.model_specs:
            raise UnknownModelError(f"unknown model {name!r}; this server has: {', '.join(self.settings.model_specs)}")
        if name not in self.models:
            raise UnknownModelError(f"model {name!r} is not loaded yet")
        return self.models[name]

    @staticmethod
    def _warm_up(served: ServedModel) -> None:
        codec = served.codec
        rng = np.random.default_rng(0)
        enc = codec.new_state(WARMUP_SIZE, WARMUP_SIZE)
        dec = codec.new_state(WARMUP_SIZE, WARMUP_SIZE)
        for _ in range(2):  # an I-frame, then a P-frame
            frame = rng.integers(0, 256, (WARMUP_SIZE, WARMUP_SIZE, 3), dtype=np.uint8)
            unit, enc, _ = codec.encode_frame(enc, frame, reconstruct=False)
            _, dec = codec.decode_frame(dec, unit)
