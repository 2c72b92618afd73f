"""``make bench-server``: how many realtime streams a local server sustains with the shipped model.

Starts a server (dev mode, the tiny default model) in a child process, then runs the load generator with 1, 2,
4, ... concurrent encode streams at a frame rate; reports per step the frames each stream got coded per second,
frame latency p50/p99, dropped frames and the server's RSS over time, and the largest number of streams that was
real time (every stream admitted, at most 1 % of frames dropped, p99 latency within the bound).

    python -m s2vc_evaluation.bench_server --streams 1,2,4,8 --fps 25 --duration 10 --size 320x240 [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from s2vc_clients.loadgen import run_load
from s2vc_server.launcher import LocalServer


class RssSampler:
    """The server's resident memory every ``period`` seconds, as (seconds since start, MiB)."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self.process = psutil.Process(pid)
        self.period = period
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic() - self._start, self.process.memory_info().rss / 2**20))
            except psutil.Error:
                return
            self._stop.wait(self.period)

    def between(self, t0: float, t1: float) -> list[float]:
        return [mib for t, mib in self.samples if t0 <= t <= t1]

    def now(self) -> float:
        return time.monotonic() - self._start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m s2vc_evaluation.bench_server", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,2,4,8", help="comma-separated numbers of concurrent streams, run in order")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of frames per step")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the frames")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the server (default: torch's choice)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-p99-ms", type=float, default=500.0, help="latency bound of a real-time step")
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--url", default=None, help="measure this running server instead of starting one (RSS is not sampled)")
    parser.add_argument("--key", default=None, help="API key for --url")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    ladder = [int(n) for n in args.streams.split(",")]
    width, height = (int(v) for v in args.size.lower().split("x"))
    console = Console(stderr=True)

    env = {"S2VC_DEV_MODE": "1", "S2VC_MAX_SESSIONS": str(max(ladder)), "S2VC_MAX_BATCH": str(args.max_batch),
           "S2VC_ENGINE": args.engine, "S2VC_DEVICE": args.device, "S2VC_LOG_LEVEL": "warning"}
    if args.threads:
        env["S2VC_THREADS"] = str(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="s2vc-bench-") as tmp, contextlib.ExitStack() as stack:
        sampler = None
        if args.url:
            url, key = args.url, args.key
        else:
            console.print(f"starting a server (tiny default model, engine {args.engine}, {args.device}) ...")
            server = stack.enter_context(LocalServer(env, data_dir=Path(tmp) / "data", log_path=Path(tmp) / "server.log"))
            url, key = server.url, None
            sampler = stack.enter_context(RssSampler(server.pid))
        for n in ladder:
            console.print(f"{n} stream(s) at {args.fps:g} fps, {width}x{height}, {args.duration:g} s ...")
            t0 = sampler.now() if sampler else 0.0
            result = asyncio.run(run_load(url, key, streams=n, fps=args.fps, duration=args.duration, width=width, height=height))
            rss = sampler.between(t0, sampler.now()) if sampler else []
            rows.append(result.summary() | {"real_time": result.real_time(max_p99_s=args.max_p99_ms / 1000),
                                            "rss_mib_max": round(max(rss), 1) if rss else None})
            time.sleep(1.0)  # let the server close the step's sessions
    sustained = max([r["streams"] for r in rows if r["real_time"]], default=0)
    table = Table(title=f"s2vc server, tiny default model, {width}x{height} @ {args.fps:g} fps, {args.duration:g} s per step")
    for column in ("streams", "coded fps/stream", "p50 ms", "p99 ms", "dropped", "refused", "peak RSS MiB", "real time"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["streams"]), f"{r['coded_fps_per_stream']:.1f}", str(r["latency_p50_ms"]), str(r["latency_p99_ms"]),
                      f"{r['frames_dropped']}/{r['frames_sent']}", str(r["refused"]), str(r["rss_mib_max"]), "yes" if r["real_time"] else "no")
    Console().print(table)
    Console().print(f"sustained sessions at real time: {sustained}")
    if sampler and sampler.samples:
        Console().print("RSS over time (s, MiB): " + ", ".join(f"{t:.0f}:{m:.0f}" for t, m in sampler.samples[:: max(1, len(sampler.samples) // 20)]))
    if args.json:
        args.json.write_text(json.dumps({"steps": rows, "sustained_real_time_streams": sustained,
                                         "rss_mib": sampler.samples if sampler else []}, indent=2))


if __name__ == "__main__":
    main()
