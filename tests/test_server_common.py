"""Shared pieces of the server tests (no tests here): a real uvicorn server in a child process on a loopback
port, small real frames, the CLI as the reference, and a reader of the /metrics page."""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from s2vc_clients import S2VCClient
from s2vc.checkpoint import load_model
from s2vc.cli import app as cli_app
from s2vc.codec import Codec
from s2vc.model import build_model
from s2vc.pipeline import decode_stream, encode_frames
from s2vc.presets import TINY
from s2vc.video_io import VideoReader, VideoWriter
from s2vc_server.launcher import LocalServer

from .conftest import clip

KEY = "test-key-0123456789abcdef"
WIDTH, HEIGHT = 128, 96
# Servers and the references computed here run one torch thread: the last bit of a decoded picture depends on how
# torch splits a reduction over threads, and on 2 shared cores one thread per process is also the fastest.
THREADS = 1


@contextlib.contextmanager
def torch_threads(n: int = THREADS) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def start_server(data_dir: Path, **settings: object) -> LocalServer:
    """A server with the shipped default model and ``settings`` (as S2VC_* variables)."""
    env = {"S2VC_THREADS": str(THREADS), "S2VC_LOG_LEVEL": "info", **{f"S2VC_{k.upper()}": str(v) for k, v in settings.items()}}
    return LocalServer(env, data_dir=data_dir, log_path=data_dir.parent / f"{data_dir.name}.log").start()


def server_fixture(name: str, **settings: object):
    """A module-scoped fixture ``server``: a real server with ``settings`` for the tests of one module."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        srv = start_server(tmp_path_factory.mktemp(name), **settings)
        yield srv
        srv.stop()

    return server


def client_fixture():
    """A module-scoped fixture ``client``: an SDK client of the module's ``server`` with the test key."""

    @pytest.fixture(scope="module")
    def client(server):
        with S2VCClient(server.url, KEY) as c:
            yield c

    return client


@functools.lru_cache(maxsize=None)
def _foreman(n: int) -> tuple[np.ndarray, ...]:
    return tuple(VideoReader(clip("foreman_352x288.h264")).frames(n))


def frames(n: int, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    """``n`` real frames: a ``width`` x ``height`` window of the foreman clip."""
    return [f[60 : 60 + height, 100 : 100 + width].copy() for f in _foreman(n)]


def write_video(path: Path, pictures: list[np.ndarray], fps: float = 25) -> Path:
    """.y4m, .yuv (I420), .mp4 ... as ``s2vc decode`` writes them."""
    with VideoWriter(path, pictures[0].shape[1], pictures[0].shape[0], fps) as writer:
        for picture in pictures:
            writer.write(picture)
    return path


def cli(*args: object) -> dict:
    """Run the s2vc CLI in this process; returns its --json summary."""
    with torch_threads():
        result = CliRunner().invoke(cli_app, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@functools.lru_cache(maxsize=None)
def _codec(seed: int | None) -> Codec:
    return Codec(load_model(None) if seed is None else build_model(TINY, num_rates=4, seed=seed))


def local_encode(pictures: list[np.ndarray], *, seed: int | None = None) -> bytes:
    """An .s2vc file of ``pictures`` made in this process (seed: a random model of the same architecture instead)."""
    codec, out = _codec(seed), io.BytesIO()
    height, width = pictures[0].shape[:2]
    with torch_threads():
        encode_frames(codec, pictures, out, codec.sequence_params(width, height, 25, 0), reconstruct=False)
    return out.getvalue()


def local_decode(bitstream: bytes) -> list[np.ndarray]:
    """Decode in this process, one frame at a time, as ``s2vc decode`` does."""
    with torch_threads():
        return [frame for frame, _ in decode_stream(_codec(None), bitstream)[1]]


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text page as (name, labels, value)."""
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(v for n, l, v in metric_samples(text) if n == name and all(l.get(k) == x for k, x in labels.items()))
