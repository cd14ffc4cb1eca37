"""A batch's before/after HTML report: one self-contained file to look at the results in.

For each image: a before/after comparison with a divider (drag it, or use the slider under it
with the keyboard), a heat map of what changed, the crops where the output changed most at 100%
and 200%, and the ground truth when the batch was scored; with ground truth, a table of
PSNR/SSIM before and after, sorted by gain. A header names the weights (name, SHA-256), the
device, precision, tile, version and command line.

The file loads nothing: images are inline (scaled JPEG previews and PNG crops, base64), the CSS
and script are inline and small, and a Content-Security-Policy allows only those (by hash) and
``data:`` images. The page is ``templates/report.html`` rendered by jinja2 with autoescaping,
so a file name is always text, never markup.

``lmfn deblur`` also logs each batch's records (``RecordLog``) in a file of the user's state
folder named for ``OUT`` (``records_log_path``), from which ``lmfn report OUT`` builds a report
after the fact; ``OUT`` itself holds only the outputs.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError, LMFNError, NothingToDoError, OutputExistsError, one_line
from .evaluation import Protocol, score_pair, to_tensor
from .files import atomic_path
from .images import DEFAULT_MAX_PIXELS
from .uris import is_uri, location, read_picture_at

log = logging.getLogger(__name__)

__all__ = ["RecordLog", "records_log_path", "ReportOptions", "changed_most", "heat_map", "read_record_log",
           "write_html_report"]



def records_log_path(out_dir: str | Path) -> Path:
    """Where the batches run into ``out_dir`` are logged: ``LMFN_STATE_DIR`` (else the user
    state folder, e.g. ~/.local/state/lmfn) / ``batches`` / a name made from ``out_dir``'s
    absolute path (its last part, readable, and a hash of the whole)."""
    folder = os.environ.get("LMFN_STATE_DIR")
    if not folder:
        import platformdirs

        folder = platformdirs.user_state_dir("lmfn", appauthor=False)
    absolute = str(out_dir) if is_uri(out_dir) else os.path.abspath(out_dir)
    tag = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(absolute).name)[:40] or "root"
    return Path(folder) / "batches" / f"{stem}-{tag}.jsonl"


# --------------------------------------------------------------------------------------------
# The records log a batch leaves in OUT
# --------------------------------------------------------------------------------------------


class RecordLog:
    """Appends one batch's header and records to ``path`` (JSON lines). A log that cannot be
    written is a warning, never a failed batch."""

    def __init__(self, path: Path, header: dict):
        self.path = Path(path)
        self.header = header
        self.failed = False
        self._started = False

    def add(self, record: dict) -> None:
        """Log ``record`` (a ``batch.Record`` as a dict), its paths made absolute so that the
        report finds the files from any folder."""
        record = {k: (os.path.abspath(v) if k in ("input", "output", "truth") and v else v) for k, v in record.items()}
        lines = []
        if not self._started:
            lines.append(json.dumps({"kind": "batch", **self.header}))
            self._started = True
        lines.append(json.dumps({"kind": "record", **record}))
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if self.failed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
        except OSError as exc:
            self.failed = True
            log.warning("%s: cannot keep the batch's records (%s); lmfn report will not see this batch",
                        one_line(self.path), exc.strerror or exc)


def read_record_log(out_dir: str | Path) -> tuple[dict, list[dict]]:
    """The header of the latest batch and the latest record of every output, over all the
    batches logged for ``out_dir`` (oldest first). NothingToDoError when there is no log."""
    path = records_log_path(out_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NothingToDoError(f"{out_dir}: no lmfn deblur batch was run into this folder here "
                               f"(no records in {path})") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read ({exc.strerror or exc})") from None
    header: dict = {}
    latest: dict[str, dict] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: line %d is not JSON (a batch killed while writing it?); skipped", one_line(path), n)
            continue
        kind = entry.pop("kind", None)
        if kind == "batch":
            header = entry
        elif kind == "record":
            key = entry.get("output") or entry.get("input")
            if entry.get("status") == "skipped" and key in latest:
                continue  # a resumed batch skipped it: the earlier result stands
            latest.pop(key, None)
            latest[key] = entry
    return header, list(latest.values())


# --------------------------------------------------------------------------------------------
# Pictures: previews, heat maps, the crops that changed most
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportOptions:
    """``max_images``: images shown in full (the rest are only in the table); ``preview``: the
    longest side of the previews in pixels; ``crop``: the side of the crops; ``crops``: how many
    per image; ``quality``: JPEG quality of the previews. An image costs about 3-4 previews of
    at most ``preview`` pixels plus ``crops`` x 3 PNG crops: under ~0.5 MB at the defaults."""

    max_images: int = 50
    preview: int = 800
    crop: int = 96
    crops: int = 2
    quality: int = 82
    protocol: Protocol = Protocol()


def _rgb8(pixels: np.ndarray) -> np.ndarray:
    """Any picture -> (H,W,3) uint8 (16-bit rounded, gray repeated, alpha dropped)."""
    px = np.asarray(pixels)
    if px.dtype == np.uint16:
        px = ((px.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif px.dtype != np.uint8:
        px = np.clip(np.rint(px * 255), 0, 255).astype(np.uint8)
    if px.ndim == 2:
        px = px[..., None]
    if px.shape[2] in (2, 4):
        px = px[..., :-1]
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    return np.ascontiguousarray(px)


def _data_uri(img: Image.Image, fmt: str, quality: int) -> str:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality, subsampling=0)
    else:
        img.save(buf, "PNG", optimize=True)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _preview(rgb: np.ndarray, size: tuple[int, int]) -> Image.Image:
    img = Image.fromarray(rgb)
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


# Control points of a dark-to-bright heat scale (black, purple, red, orange, pale yellow).
_HEAT = np.array([[0, 0, 4], [80, 18, 123], [183, 55, 121], [252, 137, 97], [252, 253, 191]], np.float32)


def heat_map(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, float]:
    """|after - before| of two (H,W,3) uint8 images as an (H,W,3) uint8 heat map, scaled so that
    the 99.5th percentile of the change is the brightest colour; and that scale in levels."""
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16)).mean(axis=2)
    scale = max(float(np.percentile(diff, 99.5)), 2.0)
    t = np.clip(diff / scale, 0, 1) * (len(_HEAT) - 1)
    lo = np.floor(t).astype(int).clip(0, len(_HEAT) - 2)
    frac = (t - lo)[..., None]
    colour = _HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac
    return np.rint(colour).astype(np.uint8), scale


def changed_most(before: np.ndarray, after: np.ndarray, size: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of up to ``count`` non-overlapping ``size`` x ``size`` windows
    where the mean |after - before| is largest, largest first."""
    h, w = before.shape[:2]
    size = min(size, h, w)
    diff = np.abs(after.astype(np.int32) - before.astype(np.int32)).sum(axis=2).astype(np.float64)
    integral = np.pad(diff.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    found: list[tuple[int, int]] = []
    for _ in range(count):
        if not np.isfinite(sums).any():
            break
        y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
        found.append((int(x), int(y)))
        sums[max(0, y - size + 1): y + size, max(0, x - size + 1): x + size] = -np.inf  # no overlap
    return found


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "inf"
    return f"{value:.{digits}f}"


def _score(pixels: np.ndarray, truth: np.ndarray, protocol: Protocol) -> tuple[float | None, float]:
    s = score_pair(to_tensor(pixels), to_tensor(truth), protocol)
    return (None if s.psnr == float("inf") else s.psnr), s.ssim


def _row(record: dict, before: np.ndarray, truth: np.ndarray, after: np.ndarray | None, anchor: str | None,
         protocol: Protocol) -> dict:
    """The score-table row of one image: the blurry input scored here, the output's scores from
    its record (scored here from ``after`` when the record has none)."""
    psnr_in, ssim_in = _score(before, truth, protocol)
    psnr_out, ssim_out = record.get("psnr"), record.get("ssim")
    if ssim_out is None and after is not None:
        psnr_out, ssim_out = _score(after, truth, protocol)
    gain = None if psnr_in is None or psnr_out is None else psnr_out - psnr_in
    return {"name": record["input"], "anchor": anchor, "psnr_in": psnr_in, "psnr_out": psnr_out, "gain": gain,
            "ssim_in": ssim_in, "ssim_out": ssim_out}


def _read(name: str):
    """The pixels of a record's file: a local path or a URI (``uris.location``)."""
    return read_picture_at(location(name), max_pixels=DEFAULT_MAX_PIXELS).pixels


def _item(index: int, record: dict, options: ReportOptions) -> tuple[dict, dict | None]:
    """The section of one image and its table row (None without ground truth)."""
    before = _read(record["input"])
    after = _read(record["output"])
    truth = _read(record["truth"]) if record.get("truth") else None
    b8, a8 = _rgb8(before), _rgb8(after)
    if b8.shape != a8.shape:
        raise ImageError(record["output"], f"is {a8.shape[1]}x{a8.shape[0]}, its input {b8.shape[1]}x{b8.shape[0]}")
    h, w = b8.shape[:2]
    k = min(1.0, options.preview / max(h, w))
    size = (max(1, round(w * k)), max(1, round(h * k)))
    heat, heat_scale = heat_map(b8, a8)
    name = record["input"]
    anchor = f"img{index}"
    views = [("before", b8), ("after", a8)]
    t8 = _rgb8(truth) if truth is not None else None
    if t8 is not None and t8.shape == b8.shape:
        views.append(("truth", t8))
    crops = []
    for x, y in changed_most(b8, a8, options.crop, options.crops):
        c = min(options.crop, h, w)
        crops.append({"x": x, "y": y, "size": c, "views": [
            {"label": label, "src": _data_uri(Image.fromarray(px[y:y + c, x:x + c]), "PNG", 0)} for label, px in views]})
    item = {
        "anchor": anchor, "name": name, "width": size[0], "height": size[1],
        "before": _data_uri(_preview(b8, size), "JPEG", options.quality),
        "after": _data_uri(_preview(a8, size), "JPEG", options.quality),
        "heat": _data_uri(_preview(heat, size), "JPEG", options.quality), "heat_scale": f"{heat_scale:.0f}",
        "truth": _data_uri(_preview(t8, size), "JPEG", options.quality) if len(views) == 3 else None,
        "crops": crops,
        "summary": f"{w}x{h}, {record.get('seconds', 0) or 0:.2f} s; output {record['output']}",
        "kernel": _kernel_view(record.get("kernel")),
    }
    if record.get("method_why"):
        item["summary"] += f"; {record['method_why']}"
    row = None
    if truth is not None:
        row = _row(record, before, truth, after, anchor, options.protocol)
        item["summary"] += (f"; PSNR {_fmt(row['psnr_in'], 2)} -> {_fmt(row['psnr_out'], 2)} dB, "
                            f"SSIM {row['ssim_in']:.4f} -> {row['ssim_out']:.4f}")
    return item, row


def _kernel_view(path: str | None) -> dict | None:
    """The kernel file ``--save-kernel`` wrote, magnified without smoothing (pixels stay
    square) to at least 128 px: {src, size, side}; None without one (or if it is gone)."""
    if not path:
        return None
    try:
        with Image.open(path) as im:
            k = np.asarray(im, dtype=np.float64)
    except (OSError, ValueError):
        log.warning("%s: the kernel file cannot be read for the report", path)
        return None
    side = k.shape[0]
    zoom = max(1, -(-128 // max(1, side)))
    grey = np.round(k / max(k.max(), 1e-12) * 255).astype(np.uint8)
    big = Image.fromarray(grey).resize((side * zoom, side * zoom), Image.Resampling.NEAREST)
    return {"src": _data_uri(big, "PNG", 0), "size": side * zoom, "side": side}


def _meta(header: dict, records: list[dict]) -> list[tuple[str, str]]:
    model = header.get("model") or {}
    ran = [r for r in records if r.get("status") == "ok"]
    pick = lambda key: ", ".join(sorted({str(r.get(key)) for r in ran if r.get(key) is not None})) or "-"  # noqa: E731
    counts = {s: sum(r.get("status") == s for r in records) for s in ("ok", "skipped", "failed")}
    return [
        ("weights", str(model.get("name") or model.get("file") or "-")),
        ("SHA-256", str(model.get("sha256") or "-")),
        ("device", pick("device")), ("precision", pick("precision")), ("tile", pick("tile")),
        ("images", f"{counts['ok']} deblurred, {counts['skipped']} skipped, {counts['failed']} failed"),
        ("lmfn", str(header.get("version") or "-")),
        ("command", str(header.get("command") or "-")),
        ("made", str(header.get("started") or "-")),
    ]


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def write_html_report(path: str | Path, records: Iterable[dict], header: dict | None = None, *,
                      options: ReportOptions = ReportOptions(), title: str | None = None) -> Path:
    """Write the report of ``records`` (``batch.Record`` as dicts: input, output, status,
    truth, psnr, ssim, ...) to ``path`` atomically; returns ``path``.

    ``header``: ``model`` (name, file, sha256), ``version``, ``command``, ``started``. Only
    images with status ok are shown (videos are listed as not shown); an image whose files
    cannot be read any more is left out with a warning. NothingToDoError when no image is left.
    """
    import jinja2

    from . import __version__

    header = header or {}
    records = list(records)
    images = [r for r in records if r.get("status") == "ok" and r.get("output") and not r.get("frames")]
    videos = sum(1 for r in records if r.get("frames"))
    if not images:
        raise NothingToDoError("no deblurred image to show in a report")
    items, rows = [], []
    for i, record in enumerate(images):
        try:
            item, row = _item(i, record, options) if len(items) < options.max_images else (None, None)
        except LMFNError as exc:
            log.warning("%s: left out of the report: %s", one_line(record["input"]), exc)
            continue
        if item is None:  # over --html-max-images: in the table only, scored from the record
            if record.get("truth") and record.get("ssim") is not None:
                try:
                    rows.append(_row(record, _read(record["input"]), _read(record["truth"]),
                                     None, None, options.protocol))
                except LMFNError as exc:
                    log.warning("%s: left out of the report: %s", one_line(record["input"]), exc)
            continue
        items.append(item)
        if row is not None:
            rows.append(row)
    if not items:
        raise NothingToDoError("no image of the batch could be read for the report")
    rows.sort(key=lambda r: (r["gain"] is None, -(r["gain"] or 0)))
    scored = [_row_text(r) for r in rows]
    mean = None
    if rows:
        finite = [r for r in rows if r["gain"] is not None]
        mean = _row_text({
            "name": "", "anchor": None,
            "psnr_in": float(np.mean([r["psnr_in"] for r in finite])) if finite else None,
            "psnr_out": float(np.mean([r["psnr_out"] for r in finite])) if finite else None,
            "gain": float(np.mean([r["gain"] for r in finite])) if finite else None,
            "ssim_in": float(np.mean([r["ssim_in"] for r in rows])), "ssim_out": float(np.mean([r["ssim_out"] for r in rows]))})
        mean["images"] = len(rows)
    left_out = []
    if len(images) > len(items):
        left_out.append(f"{len(images) - len(items)} more image(s) are not shown (the report shows at most "
                        f"{options.max_images}; --html-max-images).")
    if videos:
        left_out.append(f"{videos} video(s) of the batch are not shown: the report shows images.")
    folder = resources.files("lmfn_cli") / "templates"
    style, script = (folder / "report.css").read_text(), (folder / "report.js").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    page = env.from_string((folder / "report.html").read_text()).render(
        title=title or (header.get("out") or str(Path(path).parent)), meta=_meta(header, records), scored=scored,
        mean=mean, items=items, left_out=" ".join(left_out), version=__version__, style=style, script=script,
        style_hash=_hash(style), script_hash=_hash(script),
        protocol=f"{options.protocol.describe()}. Before: the blurry input; after: the output.")
    path = Path(path)
    _check_replaceable(path)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(page, encoding="utf-8", errors="surrogateescape")  # a name that is not UTF-8 keeps its bytes
    return path


GENERATOR = '<meta name="generator" content="lmfn report">'


def _check_replaceable(path: Path) -> None:
    """A report replaces an earlier lmfn report, never any other file."""
    if not path.exists() and not path.is_symlink():
        return
    try:
        with open(path, "rb") as f:
            ours = path.is_file() and not path.is_symlink() and GENERATOR.encode() in f.read(4096)
    except OSError:
        ours = False
    if not ours:
        raise OutputExistsError(path, "exists and is not an lmfn report; choose another name for the report")


def _row_text(row: dict) -> dict:
    gain = row["gain"]
    return {"name": row["name"], "anchor": row["anchor"], "psnr_in": _fmt(row["psnr_in"], 2),
            "psnr_out": _fmt(row["psnr_out"], 2), "gain": "-" if gain is None else f"{gain:+.2f}",
            "gain_class": "" if gain is None else ("gain-pos" if gain > 0 else "gain-neg" if gain < 0 else ""),
            "ssim_in": f"{row['ssim_in']:.4f}", "ssim_out": f"{row['ssim_out']:.4f}"}


def now() -> str:
    """The time a batch starts, as the report's header shows it."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
