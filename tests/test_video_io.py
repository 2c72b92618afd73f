"""Video I/O: readers for containers, elementary streams, raw files and PNG folders; writers for each output."""

from __future__ import annotations

import numpy as np
import pytest

from s2vc.errors import InputError
from s2vc.video_io import VideoReader, VideoWriter, parse_size

from .conftest import clip


def frames(n: int = 3, h: int = 48, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_reads_elementary_h264_and_mp4():
    r = VideoReader(clip("mobile_352x288.h264"))
    got = list(r.frames(5))
    assert (r.info.width, r.info.height) == (352, 288) and len(got) == 5 and got[0].dtype == np.uint8
    r = VideoReader(clip("realshort_320x240.mp4"))
    assert (r.info.width, r.info.height) == (320, 240) and float(r.info.fps) == pytest.approx(30.02, abs=0.01)


def test_png_folder_and_rgb_raw_are_lossless(tmp_path):
    src = frames()
    with VideoWriter(tmp_path / "pngs", 64, 48) as w:
        for f in src:
            w.write(f)
    assert all(np.array_equal(a, b) for a, b in zip(src, VideoReader(tmp_path / "pngs").frames()))
    with VideoWriter(tmp_path / "x.rgb", 64, 48) as w:
        for f in src:
            w.write(f)
    back = list(VideoReader(tmp_path / "x.rgb", size=(64, 48)).frames())
    assert len(back) == 3 and all(np.array_equal(a, b) for a, b in zip(src, back))


def test_yuv_and_y4m_round_trip_close(tmp_path):
    smooth = [np.full((48, 64, 3), (40 * i, 100, 200), np.uint8) for i in range(3)]
    for name in ("x.yuv", "x.y4m"):
        with VideoWriter(tmp_path / name, 64, 48) as w:
            for f in smooth:
                w.write(f)
        back = list(VideoReader(tmp_path / name, size=(64, 48)).frames())
        assert len(back) == 3
        assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(smooth, back)) <= 3


def test_limit_and_errors(tmp_path):
    assert len(list(VideoReader(clip("foreman_352x288.h264")).frames(2))) == 2
    with pytest.raises(InputError, match="does not exist"):
        VideoReader(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError):
        list(VideoReader(tmp_path / "junk.mp4").frames())
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .png"):
        VideoReader(tmp_path / "empty")
    with pytest.raises(InputError):
        parse_size("352-288")
    with pytest.raises(InputError, match="cannot write"):
        VideoWriter(tmp_path / "out.gif", 64, 48)
