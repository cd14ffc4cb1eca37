"""What weights do to sharp photos: a level shift, a sharpening or a smoothing?

For each unblurred photo of the yardstick's `identity` set (centre crop), the change the network
makes (output - input, 8-bit levels) is split at a Gaussian of sigma 3 px into a low-frequency
part (level shift, colour cast) and a high-frequency part, and the high-frequency part is
projected on the photo's own detail: a positive "detail gain" is sharpening, a negative one is
smoothing (denoising), and a high-frequency change with a gain near 0 is texture the network
invented. Prints one line per photo and the means.

    python benchmarks/identity_change.py WEIGHTS [--count 8] [--crop 128]

Build the set first with `python benchmarks/validation.py --build-only`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmfn_cli.images import read_image  # noqa: E402
from lmfn_cli.inference import restore  # noqa: E402
from lmfn_cli.unsharp import gaussian_blur  # noqa: E402
from lmfn_cli.weights import load_model  # noqa: E402

SET = ROOT / "scratch" / "val" / "identity-v1-seed20260520"


def gaussian(a: np.ndarray, sigma: float) -> np.ndarray:
    """``unsharp.gaussian_blur`` (the unsharp-mask baseline's) on an (H, W, C) array."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).permute(2, 0, 1)[None]
    return gaussian_blur(t, sigma)[0].permute(1, 2, 0).numpy()


def change(x: np.ndarray, y: np.ndarray, sigma: float = 3.0) -> dict[str, float]:
    """x, y: (H, W, 3) in 8-bit levels (float). PSNR, shift and the split of y - x."""
    d = y - x
    low = gaussian(d, sigma)
    high = d - low
    detail = x - gaussian(x, sigma)
    return {
        "psnr": float(10 * np.log10(255**2 / max(float((d**2).mean()), 1e-12))),
        "shift": float(d.mean()),
        "rms_low": float(np.sqrt((low**2).mean())),
        "rms_high": float(np.sqrt((high**2).mean())),
        "detail_gain": float((high * detail).sum() / max(float((detail * detail).sum()), 1e-12)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--set", type=Path, default=SET, help="paired folder whose blur/ holds sharp photos")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    rows = []
    for path in sorted((args.set / "blur").iterdir())[: args.count]:
        img = read_image(path)[..., :3]
        h, w = img.shape[:2]
        c = args.crop
        top = np.iinfo(img.dtype).max  # uint8 or uint16
        x = img[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c].astype(np.float32) / top
        y = restore(model, x).pixels
        r = change(x * 255, np.clip(y, 0, 1) * 255)
        rows.append(r)
        print(f"{path.name}: PSNR {r['psnr']:.2f} dB  shift {r['shift']:+.2f}  RMS low {r['rms_low']:.2f} "
              f"high {r['rms_high']:.2f}  detail gain {r['detail_gain']:+.3f}")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f"mean of {len(rows)}: PSNR {mean['psnr']:.2f} dB  shift {mean['shift']:+.2f}  RMS low {mean['rms_low']:.2f} "
          f"high {mean['rms_high']:.2f}  detail gain {mean['detail_gain']:+.3f}")


if __name__ == "__main__":
    main()
