"""Training curves: read a run's ``log.jsonl``, draw ``curve.png``, and fit the validation curve.

A run's log has one JSON object per line: training lines (``step``, ``loss``, ``lr``, ``elapsed``)
and validation lines (``step``, ``val_psnr``, ``val_input_psnr`` and, with several ``--val`` sets,
``val_<set>/psnr`` and ``val_<set>/input_psnr`` for each). Everything here is a pure function of
those lines.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

# one colour per validation set, in the order the log names them
SET_COLOURS = ("darkgreen", "darkorange", "purple", "firebrick", "teal", "saddlebrown")


def read_log(path: str | Path) -> list[dict]:
    """The JSON lines of a run's log (``[]`` when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validation_gains(entries: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Per validation set, ``(step, PSNR gain over the blurry input in dB)`` for each validation.

    Set names are the log's (``val_<name>/psnr``); a run validated on one set only has the
    single series ``"val"`` (``val_psnr - val_input_psnr``).
    """
    out: dict[str, list[tuple[int, float]]] = {}
    for e in entries:
        if "val_psnr" not in e:
            continue
        # the raw weights' sets; a run with ``ema`` also logs ``val_ema_<name>/psnr`` (gains
        # measured against the same ``val_<name>/input_psnr``), drawn as ``ema <name>``
        per_set = [k for k in e if k.startswith("val_") and not k.startswith("val_ema_") and k.endswith("/psnr")]
        if not per_set:
            out.setdefault("val", []).append((e["step"], e["val_psnr"] - e["val_input_psnr"]))
        for k in per_set:
            name = k[len("val_"):-len("/psnr")]
            out.setdefault(name, []).append((e["step"], e[k] - e[k.replace("/psnr", "/input_psnr")]))
            if f"val_ema_{name}/psnr" in e:
                out.setdefault(f"ema {name}", []).append((e["step"], e[f"val_ema_{name}/psnr"] - e[k.replace("/psnr", "/input_psnr")]))
    return out


@dataclass(frozen=True)
class LogFit:
    """``gain = a + b * log10(steps_seen)``, fitted by least squares on validations after ``start``.

    ``b`` is the predicted change per tenfold more steps (dB), under the fit's assumption that
    the curve keeps its log-linear shape: it does not hold across a learning-rate schedule's
    end (a cosine run flattens because the rate goes to zero) or a change of recipe.
    """

    a: float
    b: float
    points: int
    rms: float  # dB, residual of the fit

    def predict(self, steps_seen: float) -> float:
        return self.a + self.b * math.log10(steps_seen)


def fit_log_steps(series: list[tuple[int, float]], *, offset: int = 0, start: int = 1) -> LogFit:
    """Fit ``gain`` against ``log10(offset + step)`` over the points with ``step >= start``.

    ``offset`` is the number of steps the starting weights had already seen (a fine-tuning run's
    step 0 is not the network's step 0). Raises ValueError with fewer than two usable points.
    """
    pts = [(math.log10(offset + s), g) for s, g in series if s >= start and offset + s > 0]
    if len({x for x, _ in pts}) < 2:
        raise ValueError(f"need validations at two or more steps >= {start}, got {len(pts)}")
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    a = my - b * mx
    rms = math.sqrt(sum((a + b * x - y) ** 2 for x, y in pts) / n)
    return LogFit(a=a, b=b, points=n, rms=rms)


def _moving_average(values: list[float], width: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= width:
            acc -= values[i - width]
        out.append(acc / min(i + 1, width))
    return out


def plot_curve(log_path: str | Path, png_path: str | Path) -> Path | None:
    """Draw the training loss (log scale) and each validation set's gain over its blurry input.

    900x600 PNG: top, the logged loss (thin) and its moving average over 10 log lines; bottom,
    one line per validation set of PSNR(model) - PSNR(blurry) in dB, with the 0 dB line (the
    input) dashed grey. Returns the path, or None when the log has nothing to draw.
    """
    from PIL import Image, ImageDraw

    entries = read_log(log_path)
    losses = [(e["step"], e["loss"]) for e in entries if "loss" in e and e["loss"] > 0]
    gains = validation_gains(entries)
    if not losses and not gains:
        return None
    W, H, M = 900, 300, 50
    img = Image.new("RGB", (W, 2 * H), "white")
    d = ImageDraw.Draw(img)
    max_step = max([s for s, _ in losses] + [s for line in gains.values() for s, _ in line] + [1])

    def panel(top: int, series: list[tuple[list[tuple[float, float]], str, int]], title: str, fmt: str,
              zero: bool = False) -> tuple[int, int, int, int] | None:
        pts = [y for line, _, _ in series for _, y in line] + ([0.0] if zero else [])
        if not pts:
            return None
        lo, hi = min(pts), max(pts)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        x0, y0, x1, y1 = M, top + 30, W - 20, top + H - 30
        d.rectangle([x0, y0, x1, y1], outline="black")
        d.text((x0, top + 8), title, fill="black")
        for frac in (0.0, 0.5, 1.0):
            v = lo + frac * (hi - lo)
            d.text((4, y1 - frac * (y1 - y0) - 6), fmt.format(v), fill="black")
        d.text((x1 - 80, y1 + 6), f"step {max_step}", fill="black")
        if zero:  # 0 is within [lo, hi]: it was added to pts
            yz = y1 - (y1 - y0) * (0 - lo) / (hi - lo)
            for xs in range(x0, x1, 12):
                d.line([(xs, yz), (min(xs + 6, x1), yz)], fill="gray", width=1)
        for line, colour, width in series:
            xy = [(x0 + (x1 - x0) * s / max_step, y1 - (y1 - y0) * (v - lo) / (hi - lo)) for s, v in line]
            if len(xy) > 1:
                d.line(xy, fill=colour, width=width)
            for x, y in xy[-1:] if width > 1 else []:
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        return x0, y0, x1, y1

    logs = [math.log10(v) for _, v in losses]
    steps = [s for s, _ in losses]
    panel(0, [(list(zip(steps, logs)), "lightsteelblue", 1),
              (list(zip(steps, _moving_average(logs, 10))), "navy", 2)],
          "training loss (log10; thin: logged, thick: moving average of 10)", "{:.2f}")
    names = list(gains)
    box = panel(H, [(gains[n], SET_COLOURS[i % len(SET_COLOURS)], 2) for i, n in enumerate(names)],
                "validation: PSNR gain over the blurry input, dB (dashed: the input)", "{:+.2f}", zero=True)
    if box is not None:
        x, y = box[0] + 8, box[1] + 6
        for i, n in enumerate(names):
            d.text((x, y + 14 * i), n, fill=SET_COLOURS[i % len(SET_COLOURS)])
    png_path = Path(png_path)
    img.save(png_path)
    return png_path
