"""Load generator: N concurrent realtime encode streams, each sending frames at a fixed rate for a duration.

Each frame's latency is the time from writing it to the server until its unit comes back; frames the server
dropped (stale, inbox full) are counted, as are sessions refused because every slot was taken.

    python -m s2vc_clients.loadgen --url http://127.0.0.1:8000 --key KEY --streams 4 --fps 25 --duration 10 --size 320x240
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from s2vc.transport.streams import Kind, frame_to_bytes

from .duplex import post_frames
from .errors import ServerError

UNIT_TYPE_OFFSET = 4  # the type byte of a packed unit (after its 4-byte length)
END_TYPE = 4
HEADER_MAGIC = b"S2VC"


@dataclass
class StreamStats:
    sent: int = 0
    coded: int = 0
    dropped: int = 0
    errors: int = 0
    refused: bool = False
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def coded_fps(self) -> float:
        return self.coded / self.seconds if self.seconds else 0.0


@dataclass
class LoadResult:
    streams: list[StreamStats]
    fps: float
    duration: float

    @property
    def latencies(self) -> np.ndarray:
        return np.array([x for s in self.streams for x in s.latencies]) if any(s.latencies for s in self.streams) else np.zeros(0)

    def percentile_ms(self, q: float) -> float | None:
        lat = self.latencies
        return float(np.percentile(lat, q) * 1000) if lat.size else None

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.streams)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.streams)

    @property
    def refused(self) -> int:
        return sum(s.refused for s in self.streams)

    def real_time(self, max_drop: float = 0.01, max_p99_s: float = 0.5) -> bool:
        """Every stream was admitted, dropped at most ``max_drop`` of its frames and got its units back in time."""
        p99 = self.percentile_ms(99)
        return (self.refused == 0 and self.sent > 0 and self.dropped <= max_drop * self.sent
                and sum(s.errors for s in self.streams) == 0 and p99 is not None and p99 <= max_p99_s * 1000)

    def summary(self) -> dict[str, object]:
        return {
            "streams": len(self.streams), "fps": self.fps, "duration_s": self.duration, "refused": self.refused,
            "frames_sent": self.sent, "frames_coded": sum(s.coded for s in self.streams), "frames_dropped": self.dropped,
            "errors": sum(s.errors for s in self.streams),
            "coded_fps_per_stream": round(float(np.mean([s.coded_fps for s in self.streams if not s.refused] or [0])), 2),
            "latency_p50_ms": _round(self.percentile_ms(50)), "latency_p99_ms": _round(self.percentile_ms(99)),
            "real_time": self.real_time(),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def synthetic_frames(width: int, height: int, count: int = 50, seed: int = 0) -> list[np.ndarray]:
    """A textured picture panning right (something for the inter codec to predict)."""
    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 256, (height // 8 + 1, (width + count * 2) // 8 + 1, 3), dtype=np.uint8)
    canvas = np.kron(canvas, np.ones((8, 8, 1), dtype=np.uint8))
    return [np.ascontiguousarray(canvas[:height, 2 * i : 2 * i + width]) for i in range(count)]


async def run_stream(url: str, api_key: str | None, frames: list[bytes], *, width: int, height: int, fps: float, duration: float,
                     pixel_format: str = "i420", rate: int = 0) -> StreamStats:
    """One realtime encode stream: ``fps`` frames a second for ``duration`` seconds, in one chunked request."""
    stats = StreamStats()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        response = await http.post("/v1/streams", json={"width": width, "height": height, "fps": fps, "rate": rate,
                                                        "pixel_format": pixel_format, "realtime": True})
        if response.status_code == 503:
            stats.refused = True
            return stats
        if response.status_code != 201:
            raise ServerError(response.status_code, response.text)
        stream_id = response.json()["id"]
    sent_at: list[float] = []
    total = max(1, int(round(duration * fps)))

    async def body():
        start = time.monotonic()
        for i in range(total):
            delay = start + i / fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at.append(time.monotonic())
            yield frames[i % len(frames)]

    accounted: set[int] = set()
    next_index = 0
    start = time.monotonic()
    async for kind, data in post_frames(url, stream_id, body(), api_key=api_key, end=True):
        now = time.monotonic()
        if kind == Kind.DATA:
            if data.startswith(HEADER_MAGIC) or data[UNIT_TYPE_OFFSET] == END_TYPE:
                continue
            while next_index in accounted:  # the unit belongs to the oldest frame not dropped or refused yet
                next_index += 1
            stats.coded += 1
            stats.latencies.append(now - sent_at[next_index])
            accounted.add(next_index)
        else:
            info = json.loads(data)
            if info.get("frame") is not None:
                accounted.add(info["frame"])
            if kind == Kind.DROP:
                stats.dropped += 1
            else:
                stats.errors += 1
    stats.seconds = time.monotonic() - start
    stats.sent = len(sent_at)
    return stats


async def run_load(url: str, api_key: str | None, *, streams: int, fps: float, duration: float, width: int, height: int,
                   pixel_format: str = "i420", stagger: float = 0.05) -> LoadResult:
    pictures = [frame_to_bytes(pixel_format, f) for f in synthetic_frames(width, height)]

    async def staggered(i: int) -> StreamStats:
        await asyncio.sleep(i * stagger)
        return await run_stream(url, api_key, pictures, width=width, height=height, fps=fps, duration=duration, pixel_format=pixel_format)

    results = await asyncio.gather(*(staggered(i) for i in range(streams)))
    return LoadResult(list(results), fps, duration)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m s2vc_clients.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=None, help="API key (S2VC_API_KEYS of the server)")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of frames per stream")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--pixel-format", default="i420", choices=["i420", "rgb24"])
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    result = asyncio.run(run_load(args.url, args.key, streams=args.streams, fps=args.fps, duration=args.duration,
                                  width=width, height=height, pixel_format=args.pixel_format))
    print(json.dumps(result.summary(), indent=2))


if __name__ == "__main__":
    main()
