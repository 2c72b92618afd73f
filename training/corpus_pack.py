"""Carry a training corpus to a machine that cannot build it (a GPU slot: no network, no PyAV, no data packages).

``pack`` stores the clips of a corpus (``python -m training.data --out DIR``) in one compressed ``.npz`` under a
size budget: each clip keeps its first frames, at most ``--frames`` of them, centre-cropped to at most ``--crop``
pixels a side, and clips are taken in turns across sources (every source's first clip, then every second clip…)
until the budget is reached. ``unpack`` writes them back as a corpus folder (``.npy`` clips and a
manifest that lists what was kept) that :class:`training.data.ClipDataset` reads. Only numpy is needed there::

    python -m training.corpus_pack pack --corpus runs/corpus --out carry/corpus.npz --max-mb 40
    python -m training.corpus_pack unpack carry/corpus.npz --out /tmp/corpus
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np

MANIFEST_KEY = "__manifest__"


def _in_turns(clips: list[dict]) -> list[dict]:
    """Every source's first clip, then every source's second clip, …"""
    seen: dict[str, int] = {}
    ranked = []
    for order, clip in enumerate(clips):
        source = clip.get("source", clip["file"])
        ranked.append((seen.get(source, 0), order, clip))
        seen[source] = seen.get(source, 0) + 1
    return [clip for _, _, clip in sorted(ranked, key=lambda t: (t[0], t[1]))]


def _centre(array: np.ndarray, crop: int) -> np.ndarray:
    h, w = array.shape[1:3]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return array[:, top : top + crop, left : left + crop]


def pack(corpus: Path, out: Path, *, max_mb: float = 40.0, frames: int = 24, crop: int = 4096) -> dict:
    """Write ``out`` (.npz); returns the kept manifest."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    manifest["clips"] = _in_turns(manifest["clips"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    kept = []
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for clip in manifest["clips"]:
            array = _centre(np.load(corpus / clip["file"], mmap_mode="r")[:frames], crop)
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(array))
            name = Path(clip["file"]).stem
            archive.writestr(f"{name}.npy", buffer.getvalue())
            archive.fp.flush()  # type: ignore[union-attr]
            if tmp.stat().st_size > max_mb * 1e6:
                break  # this clip went over the budget: it is left out (rewritten below without it)
            kept.append({**clip, "frames": int(array.shape[0]), "height": int(array.shape[1]), "width": int(array.shape[2])})
    if len(kept) < len(manifest["clips"]):  # rebuild without the clip that crossed the budget
        with zipfile.ZipFile(tmp, "r") as src, zipfile.ZipFile(tmp.with_suffix(".re"), "w", zipfile.ZIP_DEFLATED, compresslevel=6) as dst:
            for clip in kept:
                name = f"{Path(clip['file']).stem}.npy"
                dst.writestr(name, src.read(name))
        tmp.with_suffix(".re").replace(tmp)
    if not kept:
        tmp.unlink()
        raise SystemExit(f"not even the first clip fits in {max_mb} MB")
    packed = {**manifest, "clips": kept, "packed_from": str(corpus), "packed_frames": frames, "packed_crop": crop}
    with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{MANIFEST_KEY}.json", json.dumps(packed))
    tmp.replace(out)
    return packed


def unpack(archive_path: Path, out: Path) -> dict:
    """Write the corpus folder; returns its manifest."""
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive_path) as archive:
        manifest = json.loads(archive.read(f"{MANIFEST_KEY}.json"))
        for clip in manifest["clips"]:
            (out / clip["file"]).write_bytes(archive.read(f"{Path(clip['file']).stem}.npy"))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="corpus folder → one .npz under a size budget")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-mb", type=float, default=40.0)
    p.add_argument("--frames", type=int, default=24, help="frames kept per clip (from its start)")
    p.add_argument("--crop", type=int, default=4096, help="centre crop, at most this many pixels a side")
    u = sub.add_parser("unpack", help=".npz → corpus folder")
    u.add_argument("archive", type=Path)
    u.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "pack":
        manifest = pack(args.corpus, args.out, max_mb=args.max_mb, frames=args.frames, crop=args.crop)
        print(f"packed {len(manifest['clips'])} clips into {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    else:
        manifest = unpack(args.archive, args.out)
        print(f"unpacked {len(manifest['clips'])} clips into {args.out}")


if __name__ == "__main__":
    main()
