"""``s2vc-client``: the server from the command line: jobs, streams and calls.

    export S2VC_URL=http://127.0.0.1:8000 S2VC_API_KEY=...
    s2vc-client job encode clip.mp4 -o clip.s2vc
    s2vc-client stream clip.mp4 -o live.s2vc
    s2vc-client stream /dev/video0 --device-format v4l2 --frames 250 -o camera.s2vc
    s2vc-client call --publish clip.mp4 -o decoded.y4m          # the server codes the file, we decode its units
    s2vc-client call --room demo --publish clip.mp4              # publish into a room (coded here)
    s2vc-client call --room demo -o decoded.y4m --seconds 20     # subscribe: decode the room's units here
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import av
import numpy as np
import typer
from rich.console import Console

from s2vc.bitstream import UnitType, end_unit, pack_header, pack_unit
from s2vc.errors import S2VCError
from s2vc.video_io import VideoReader, VideoWriter
from s2vc.transport.streams import frame_to_bytes

from .errors import JobFailed, ServerError
from .sdk import S2VCClient

app = typer.Typer(help="Talk to an s2vc server: REST jobs, live streams and WebRTC calls.", no_args_is_help=True, add_completion=False)
err = Console(stderr=True)
URL = typer.Option("http://127.0.0.1:8000", "--url", envvar="S2VC_URL", help="The server's base URL.")
KEY = typer.Option(None, "--key", envvar="S2VC_API_KEY", help="API key (Bearer); not needed in dev mode.")


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@app.command()
def job(operation: str = typer.Argument(..., help="encode (video → .s2vc) or decode (.s2vc → video)"),
        input: Path = typer.Argument(..., exists=True, dir_okay=False, help="The file to upload."),
        output: Path = typer.Option(..., "-o", "--output", help="Where to write the result."),
        rate: int = typer.Option(0, help="Rate point (encode)."), model: str = typer.Option("default", help="A model the server serves."),
        url: str = URL, key: Optional[str] = KEY) -> None:
    """Upload a file as a job, wait for it, download the result."""
    if operation not in ("encode", "decode"):
        _fail(f"operation must be encode or decode, not {operation!r}")
    try:
        with S2VCClient(url, key) as client:
            submitted = client.submit_job(input, operation, rate=rate, model=model)
            with err.status(f"job {submitted['id']} ({operation})"):
                client.wait_job(submitted["id"])
            client.download_result(submitted["id"], output)
    except (ServerError, JobFailed) as exc:
        _fail(str(exc))
    err.print(f"wrote {output} ({output.stat().st_size} bytes)")


def open_device(device: str, device_format: str) -> tuple[Iterator[np.ndarray], int, int, float]:
    """A camera or other capture device through FFmpeg (``/dev/video0`` with ``v4l2``): its RGB frames, size, fps."""
    try:
        container = av.open(device, format=device_format)
    except (av.FFmpegError, OSError) as exc:
        raise S2VCError(f"cannot open {device} as {device_format}: {exc}") from None
    stream = container.streams.video[0]
    width, height = stream.codec_context.width // 2 * 2, stream.codec_context.height // 2 * 2  # I420 needs even sizes

    def frames() -> Iterator[np.ndarray]:
        with container:
            for frame in container.decode(stream):
                yield frame.reformat(width=width, height=height, format="rgb24").to_ndarray()

    return frames(), width, height, float(stream.average_rate or 25)


@app.command()
def stream(input: str = typer.Argument(..., help="A video file (any format `s2vc encode` reads), or a device with --device-format."),
           output: Path = typer.Option(..., "-o", "--output", help="The .s2vc file the server's units are written to."),
           device_format: Optional[str] = typer.Option(None, "--device-format", help="Read INPUT as a capture device: v4l2 (/dev/video0), "
                                                       "avfoundation, dshow, lavfi ... (FFmpeg input formats)."),
           rate: int = typer.Option(0, help="Rate point."), frames: Optional[int] = typer.Option(None, help="Stop after this many frames (a camera: needed)."),
           url: str = URL, key: Optional[str] = KEY) -> None:
    """Stream a file's or a camera's frames through /v1/streams (I420, never dropping) and save the units as they come."""
    try:
        if device_format:
            pictures, width, height, fps = open_device(input, device_format)
        else:
            reader = VideoReader(input)
            pictures, width, height, fps = reader.frames(), reader.info.width, reader.info.height, float(reader.info.fps)
        with S2VCClient(url, key) as client:
            session = client.open_stream(width=width, height=height, fps=fps, rate=rate, realtime=False)
            chunks = (frame_to_bytes("i420", f) for f in itertools.islice(pictures, frames))
            reply = client.send_frames(session["id"], chunks, end=True)
    except (ServerError, S2VCError) as exc:
        _fail(str(exc))
    if reply.errors:
        _fail(f"the server reported: {reply.errors[0].get('message')}")
    output.write_bytes(reply.bitstream)
    err.print(f"wrote {output} ({len(reply.bitstream)} bytes, {len(reply.data) - 2} frames)")


@app.command()
def call(room: Optional[str] = typer.Option(None, help="Join this room; without --publish, as a subscriber."),
         publish: Optional[Path] = typer.Option(None, exists=True, help="A video file to send (looped without a room)."),
         output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the pictures decoded here (.y4m, .mp4, ...)."),
         units: Optional[Path] = typer.Option(None, "--units", help="Also write the received units as a .s2vc file."),
         seconds: float = typer.Option(10.0, min=0.1, help="How long to stay in the call (a publisher in a room: until the file ends)."),
         rate: int = typer.Option(0, help="Rate point."), target_kbps: Optional[float] = typer.Option(None, help="Target bitrate (rate control)."),
         max_width: int = typer.Option(320), max_height: int = typer.Option(240),
         model: Optional[Path] = typer.Option(None, help="Local model for decoding/coding here (default: the shipped model)."),
         hosts: Optional[str] = typer.Option(None, envvar="S2VC_WEBRTC_HOSTS", help="Offer ICE candidates on these addresses only (e.g. 127.0.0.1)."),
         threads: int = typer.Option(1, min=1, help="CPU threads for coding here (torch)."),
         url: str = URL, key: Optional[str] = KEY) -> None:
    """Join a WebRTC call as a native peer: S²VC units on a data channel, coded or decoded on this machine."""
    from s2vc.checkpoint import load_model
    from s2vc.codec import Codec

    from s2vc.transport.ice import restrict_host_addresses

    from .call import CallPeer, FramesTrack

    restrict_host_addresses([h.strip() for h in (hosts or "").split(",") if h.strip()])
    if room and publish and output:
        _fail("a room's publisher sends its units; decode them as a subscriber (drop --output)")
    import torch

    torch.set_num_threads(threads)
    codec = Codec(load_model(str(model) if model else None), "cpu")
    reader = VideoReader(publish) if publish else None

    async def run() -> CallPeer:
        peer = CallPeer(url, key, codec=codec)
        if room and reader:  # a publisher: code here, send units
            await peer.join(mode="bitstream", room=room, role="publisher")
            sent = await peer.publish(reader.frames(), fps=float(reader.info.fps), rate=rate)
            err.print(f"published {sent} units to room {room}")
        else:
            source = FramesTrack(list(reader.frames(int(seconds * float(reader.info.fps)) + 1)), float(reader.info.fps)) if reader else None
            options = {"rate": rate, "target_kbps": target_kbps, "max_width": max_width, "max_height": max_height}
            await peer.join(mode="bitstream", room=room, role="subscriber" if room else "publisher", source=source, **options)
            with err.status(f"in call {peer.call_id}"):
                await asyncio.sleep(seconds)
        await peer.hang_up()
        return peer

    try:
        peer = asyncio.run(run())
    except ServerError as exc:
        _fail(str(exc))
    if output and peer.frames:
        first = peer.frames[0].picture
        with VideoWriter(output, first.shape[1], first.shape[0], 25) as writer:
            for decoded in peer.frames:
                writer.write(decoded.picture)
    seqs = [u for u in peer.units if u.type == UnitType.SEQ]
    if units and seqs:  # a .s2vc file: the header from the first SEQ unit, every unit as received, and END (a file ends with it)
        received = [u for u in peer.units if u.type != UnitType.END]
        coded = [u.frame_index for u in received if u.type in (UnitType.I, UnitType.P)]
        end = end_unit(coded[-1] + 1 if coded else 0, seqs[0].rate)
        units.write_bytes(pack_header(seqs[0].params()) + b"".join(pack_unit(u) for u in [*received, end]))
    last = peer.stats[-1] if peer.stats else {}
    summary = {"call": peer.call_id, "frames": len(peer.frames), "units": len(peer.units), "keyframe_requests": peer.keyframe_requests,
               "kbps": last.get("kbps"), "errors": peer.errors + peer.decode_errors}
    typer.echo(json.dumps(summary))
