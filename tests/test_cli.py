"""The s2vc command line, in process (typer's runner) on a real clip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from s2vc.checkpoint import load_model
from s2vc.cli import app
from s2vc.codec import Codec
from s2vc.pipeline import decode_stream
from s2vc.video_io import VideoReader, VideoWriter

from .conftest import clip

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    out = folder / "clip.s2vc"
    result = invoke("encode", clip("realshort_320x240.mp4"), out, "--model", "tiny", "--frames", "4", "--rate", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return folder, out, summary


def test_encode_summary_matches_the_file(encoded):
    _, out, summary = encoded
    assert summary["frames"] == 4 and (summary["width"], summary["height"]) == (320, 240)
    assert summary["bytes"] == out.stat().st_size
    assert summary["bpp"] == pytest.approx(out.stat().st_size * 8 / (320 * 240 * 4))
    assert summary["psnr"] is not None and summary["coding_fps"] > 0


def test_info_lists_header_and_units(encoded):
    _, out, _ = encoded
    result = invoke("info", out)
    assert result.exit_code == 0, result.output
    assert "320x240" in result.output and "I: 1, P: 3, END: 1" in result.output and "tiny" in result.output


def test_decode_to_png_folder_equals_the_step_api(encoded):
    folder, out, _ = encoded
    result = invoke("decode", out, folder / "pngs", "--model", "tiny", "--reference", clip("realshort_320x240.mp4"))
    assert result.exit_code == 0, result.output
    written = list(VideoReader(folder / "pngs").frames())
    _, frames = decode_stream(Codec(load_model("tiny")), out.read_bytes())
    expected = [f for f, _ in frames]
    assert len(written) == 4
    assert all(np.array_equal(a, b) for a, b in zip(written, expected))


@pytest.mark.parametrize("suffix", [".y4m", ".mp4"])
def test_decode_to_video_files(encoded, suffix):
    folder, out, _ = encoded
    target = folder / f"decoded{suffix}"
    result = invoke("decode", out, target, "--model", "tiny")
    assert result.exit_code == 0, result.output
    reader = VideoReader(target)
    assert (reader.info.width, reader.info.height) == (320, 240)
    assert len(list(reader.frames())) == 4


def test_raw_yuv_input_needs_and_uses_size(tmp_path):
    frames = list(VideoReader(clip("foreman_352x288.h264")).frames(2))
    raw = tmp_path / "in.yuv"
    with VideoWriter(raw, 352, 288) as w:
        for f in frames:
            w.write(f)
    result = invoke("encode", raw, tmp_path / "a.s2vc", "--model", "tiny")
    assert result.exit_code == 2 and "--size" in result.output
    result = invoke("encode", raw, tmp_path / "a.s2vc", "--model", "tiny", "--size", "352x288", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["frames"] == 2


def test_errors_are_reported_not_raised(tmp_path, encoded):
    _, out, _ = encoded
    assert "does not exist" in invoke("encode", tmp_path / "none.mp4", tmp_path / "x.s2vc", "--model", "tiny").output
    damaged = tmp_path / "damaged.s2vc"
    data = bytearray(out.read_bytes())
    data[200] ^= 0x10
    damaged.write_bytes(bytes(data))
    result = invoke("decode", damaged, tmp_path / "o.y4m", "--model", "tiny")
    assert result.exit_code == 2 and "error" in result.output and "CRC" in result.output.upper()
    result = invoke("info", tmp_path / "nothing.s2vc")
    assert result.exit_code == 2


def test_help_explains_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("encode", "decode", "info", "demo"):
        assert command in result.output


def test_target_bitrate_switches_rate_points_and_decodes(tmp_path):
    """--target-kbps far above the top rate point: rate control climbs one rate point per frame."""
    out = tmp_path / "rc.s2vc"
    result = invoke("encode", clip("realshort_320x240.mp4"), out, "--frames", "5", "--target-kbps", "100000", "--json")
    assert result.exit_code == 0, result.output
    from s2vc.bitstream import StreamReader

    reader = StreamReader(out.read_bytes())
    rates = [u.rate for u in iter(reader.read_unit, None) if u.type.name in ("I", "P")]
    model = load_model(None)
    assert rates == [min(i, model.num_rates - 1) for i in range(5)]  # up one a frame, then held at the top
    _, frames = decode_stream(Codec(model), out.read_bytes())
    assert len(list(frames)) == 5
    result = invoke("encode", clip("realshort_320x240.mp4"), tmp_path / "x.s2vc", "--target-kbps", "0")
    assert result.exit_code != 0 and "target-kbps" in result.output
