"""The training-data pack of ``benchmarks/gpu_train.py`` (made here, read on the lent GPU).

``make_pack`` writes ``pack.safetensors``, the sharp photos as compressed bytes in uint8 arrays
(BSDS500 train+test as they are, Urban100 downscaled to ``--max-side`` and re-encoded as JPEG
q95) and GoPro-style (blurry, sharp) pairs (lossless WebP), and ``kernels.npz``, a bank of uniform
blur kernels from the *training* share of the measured kernels. ``read_pack`` gives them back.
Run through ``python benchmarks/gpu_train.py --pack`` (its options).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import save_file

from lmfn_cli import __version__, gpu_synth, synth
from lmfn_cli.files import atomic_path

PACK_FORMAT = "lmfn-gpu-pack/1"
SHARED = Path(__file__).resolve().parents[2] / "shared"
MiB = 2**20


def _photo_bytes(path: Path, max_side: int, quality: int) -> tuple[bytes, int, int]:
    """A photo's JPEG bytes (as stored if JPEG and small enough, else resized/re-encoded), h, w."""
    with Image.open(path) as im:
        im.load()
        w, h = im.size
        if im.format == "JPEG" and im.mode == "RGB" and max(w, h) <= max_side:
            return path.read_bytes(), h, w
        im = im.convert("RGB")
        if max(w, h) > max_side:
            s = max_side / max(w, h)
            w, h = max(1, round(w * s)), max(1, round(h * s))
            im = im.resize((w, h), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, subsampling=0)
        return buf.getvalue(), h, w


def _webp(path: Path) -> bytes:
    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="WEBP", lossless=True, method=4)
        return buf.getvalue()


def _concat(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).copy(), offsets


def _split(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    return [data[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]


def make_pack(args: argparse.Namespace) -> Path:
    """Write ``pack.safetensors`` and ``kernels.npz`` into ``args.pack_dir``; returns the folder."""
    shared = Path(args.shared)
    out = Path(args.pack_dir)
    out.mkdir(parents=True, exist_ok=True)
    folders = [Path(p) for p in args.photos] if args.photos else [
        shared / "data/sharp/bsds500/train", shared / "data/sharp/bsds500/test", shared / "data/sharp/urban100"]
    photos, infos = [], []
    for folder in folders:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        if not paths:
            raise SystemExit(f"{folder}: no photos")
        for p in paths:
            data, h, w = _photo_bytes(p, args.max_side, args.jpeg_quality)
            photos.append(data)
            infos.append({"name": p.name, "source": folder.name if folder.name not in ("train", "test")
                          else f"{folder.parent.name}/{folder.name}", "h": h, "w": w})
    kernels_dir = Path(args.kernels) if args.kernels else shared / "data/kernels"
    bank = synth.KernelBank.from_dir(kernels_dir) if kernels_dir.is_dir() else None
    if bank is None:
        print(f"{kernels_dir}: not there; the kernel bank has random trajectories only")
    gpu_synth.load_or_build_kernel_bank(out / "kernels.npz", args.kernel_count, args.kernel_size, args.seed, bank,
                                        "train", nominal_side=args.max_side)
    budget = args.max_mib * MiB - sum(len(b) for b in photos) - (out / "kernels.npz").stat().st_size - 64 * 1024
    if budget < 0:
        raise SystemExit(f"photos and kernels alone exceed {args.max_mib} MiB: lower --max-side or --kernel-count")
    pairs, pair_infos = [], []
    with tempfile.TemporaryDirectory() as tmp:
        pair_dir = Path(args.pairs_dir) if args.pairs_dir else None
        frames = Path(args.frames) if args.frames else shared / "data/frames/GOPR0477_11_00"
        if pair_dir is None and args.gopro_pairs > 0 and frames.is_dir():
            pair_dir = Path(tmp) / "pairs"
            synth.make_frame_pairs(frames, pair_dir, seed=args.seed, count=args.gopro_pairs, stop=args.gopro_stop,
                                   crop=args.gopro_crop)
        if pair_dir is not None:
            names = sorted(p.name for p in (pair_dir / "blur").iterdir() if (pair_dir / "sharp" / p.name).exists())
            for name in names[: args.gopro_pairs]:
                b, s = _webp(pair_dir / "blur" / name), _webp(pair_dir / "sharp" / name)
                if len(b) + len(s) > budget:
                    break
                budget -= len(b) + len(s)
                pairs.append((b, s))
                pair_infos.append({"name": name, "from": str(pair_dir) if args.pairs_dir else f"{frames.name}[:{args.gopro_stop}]"})
    tensors = dict(zip(("photo_bytes", "photo_offsets"), _concat(photos)))
    if pairs:
        tensors.update(zip(("pair_blur_bytes", "pair_blur_offsets"), _concat([b for b, _ in pairs])))
        tensors.update(zip(("pair_sharp_bytes", "pair_sharp_offsets"), _concat([s for _, s in pairs])))
    meta = {"format": PACK_FORMAT, "photos": infos, "pairs": pair_infos, "max_side": args.max_side,
            "lmfn_version": __version__}
    with atomic_path(out / "pack.safetensors") as tmp_path:
        save_file(tensors, str(tmp_path), metadata={"pack": json.dumps(meta)})
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    counts = {}
    for i in infos:
        counts[i["source"]] = counts.get(i["source"], 0) + 1
    print(f"pack {out}: {len(photos)} photos {counts}, {len(pairs)} GoPro-style pairs, "
          f"{args.kernel_count} kernels; {total / MiB:.1f} MiB")
    return out


def read_pack(pack_dir: Path) -> tuple[list[bytes], list[tuple[bytes, bytes]], dict]:
    """(photo bytes, (blurry, sharp) pair bytes, metadata) of a pack."""
    path = Path(pack_dir) / "pack.safetensors"
    with safe_open(str(path), framework="np") as f:
        meta = json.loads((f.metadata() or {}).get("pack", "{}"))
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != PACK_FORMAT:
        raise SystemExit(f"{path}: not an {PACK_FORMAT} file")
    photos = _split(arrays["photo_bytes"], arrays["photo_offsets"])
    pairs = []
    if "pair_blur_bytes" in arrays:
        pairs = list(zip(_split(arrays["pair_blur_bytes"], arrays["pair_blur_offsets"]),
                         _split(arrays["pair_sharp_bytes"], arrays["pair_sharp_offsets"])))
    return photos, pairs, meta


def decode(blob: bytes) -> np.ndarray:
    """An image file's bytes as an (H, W, 3) uint8 RGB array."""
    with Image.open(io.BytesIO(blob)) as im:
        return np.array(im.convert("RGB"))
