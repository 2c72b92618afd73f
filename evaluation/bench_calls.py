"""``make bench-calls``: how many WebRTC calls a local server codes in real time with the shipped model.

Starts a server (dev mode, ICE on loopback) in a child process, then joins 1, 2, ... native peers at once, each
sending foreman (scaled to ``--size``) as video at ``--fps`` through VP8, in ``bitstream`` or ``preview`` mode.
Per step it reports, from the server's per-frame stats messages: frames coded per second per call, latency from
a frame's arrival to its unit (bitstream) or reconstruction (preview) p50/p99, kbps and frames dropped.

    python -m s2vc_evaluation.bench_calls --calls 1,2 --mode preview --size 320x240 --fps 25 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from rich.console import Console
from rich.table import Table

from s2vc_clients.call import CallPeer, FramesTrack
from s2vc.transport.ice import restrict_host_addresses
from s2vc.video_io import VideoReader
from s2vc_server.launcher import LocalServer

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips" / "foreman_352x288.h264"


async def _drain(track) -> None:
    with contextlib.suppress(Exception):
        while True:
            await track.recv()


def _dropped(stats: list[dict], mark: int) -> int:
    """Frames the server dropped for one call after its ``mark``-th stats message (stats carry a running count)."""
    if len(stats) <= mark:
        return 0
    before = stats[mark - 1]["dropped"] if mark else 0
    return stats[-1]["dropped"] - before


async def run_step(url: str, calls: int, frames: list[np.ndarray], *, mode: str, fps: float, duration: float,
                   target_kbps: float | None) -> dict[str, object]:
    height, width = frames[0].shape[:2]
    peers = [CallPeer(url) for _ in range(calls)]
    options = {"max_width": width, "max_height": height, "fps": fps, "target_kbps": target_kbps}
    await asyncio.gather(*(p.join(mode=mode, source=FramesTrack(frames, fps), **options) for p in peers))
    drains = [asyncio.ensure_future(_drain(t)) for p in peers for t in p.remote_tracks]
    await asyncio.sleep(2.0)  # warm-up: the first I-frames and the connection settling
    marks = [len(p.stats) for p in peers]
    await asyncio.sleep(duration)
    windows = [p.stats[m:] for p, m in zip(peers, marks)]
    dropped = sum(_dropped(p.stats, m) for p, m in zip(peers, marks))
    for drain in drains:
        drain.cancel()
    await asyncio.gather(*(p.hang_up() for p in peers))
    latencies = np.array([s["latency_ms"] for w in windows for s in w]) if any(windows) else np.array([0.0])
    coded = sum(len(w) for w in windows)
    return {
        "calls": calls, "mode": mode, "coded_fps_per_call": round(coded / duration / calls, 2),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)), 1), "latency_p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "kbps_per_call": round(sum(s["bytes"] for w in windows for s in w) * 8 / 1000 / duration / calls, 2),
        "frames_dropped": int(dropped), "frames_offered": int(round(fps * duration * calls)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m s2vc_evaluation.bench_calls", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,2", help="comma-separated numbers of concurrent calls, run in order")
    parser.add_argument("--mode", choices=("bitstream", "preview"), default="bitstream")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per step (after 2 s of warm-up)")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT the clip is scaled to")
    parser.add_argument("--target-kbps", type=float, default=None, help="rate control on, with this target")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the server")
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    ladder = [int(n) for n in args.calls.split(",")]
    width, height = (int(v) for v in args.size.lower().split("x"))
    console = Console(stderr=True)
    frames = [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(width=width, height=height).to_ndarray(format="rgb24")
              for f in VideoReader(args.clip).frames(50)]
    restrict_host_addresses(["127.0.0.1"])
    env = {"S2VC_DEV_MODE": "1", "S2VC_MAX_SESSIONS": str(max(ladder)), "S2VC_WEBRTC_HOSTS": "127.0.0.1", "S2VC_LOG_LEVEL": "warning"}
    if args.threads:
        env["S2VC_THREADS"] = str(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="s2vc-bench-calls-") as tmp:
        console.print("starting a server (tiny default model) ...")
        with LocalServer(env, data_dir=Path(tmp) / "data", log_path=Path(tmp) / "server.log") as server:
            for n in ladder:
                console.print(f"{n} {args.mode} call(s), {width}x{height} at {args.fps:g} fps, {args.duration:g} s ...")
                rows.append(asyncio.run(run_step(server.url, n, frames, mode=args.mode, fps=args.fps, duration=args.duration,
                                                 target_kbps=args.target_kbps)))
                time.sleep(1.0)
    table = Table(title=f"s2vc WebRTC calls ({args.mode}), tiny default model, {width}x{height} offered at {args.fps:g} fps")
    for column in ("calls", "coded fps/call", "p50 ms", "p99 ms", "kbps/call", "dropped"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["calls"]), f"{r['coded_fps_per_call']:.1f}", str(r["latency_p50_ms"]), str(r["latency_p99_ms"]),
                      f"{r['kbps_per_call']:.1f}", f"{r['frames_dropped']}/{r['frames_offered']}")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
