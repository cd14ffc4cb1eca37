"""Benchmark datasets for ``lmfn bench``: Köhler et al. 2012, GoPro (GOPRO_Large), paired folders.

- **Köhler** (Köhler, Hirsch, Mohler, Schölkopf, Harmeling: "Recording and Playback of Camera
  Shake: Benchmarking Blind Deconvolution with a Real-World Database", ECCV 2012): 4 images x 12
  camera-shake trajectories = 48 real blurry photos, each with the ~200 sharp video frames taken
  along its trajectory. ``fetch_kohler()`` downloads its 5 archives (MD5-verified), extracts them
  into ``data_dir()/kohler``; ``kohler_items(root)`` reads that layout (or any copy of it).
- **GoPro** (Nah, Kim, Lee: "Deep Multi-Scale Convolutional Neural Network for Dynamic Scene
  Deblurring", CVPR 2017): ``gopro_items(root)`` reads ``GOPRO_Large/test/SEQUENCE/{blur,
  blur_gamma,sharp}/*.png``. Its authors publish no checksum, so ``fetch_gopro()`` downloads only
  from a URL and SHA-256 you give it (``LMFN_GOPRO_URL`` + ``LMFN_GOPRO_SHA256``).
- **Paired folders**: ``pair_items(root)`` pairs ``blur/`` with ``sharp/`` or ``input/`` with
  ``target/`` (or sub-folders that each have them) by file name.

Downloads go to ``data_dir()/downloads/NAME/`` (``LMFN_DATA_DIR``, else the user data dir), are
verified before use, and are deleted once extracted. Extraction is all-or-nothing and refuses
members that would land outside the dataset folder (``lmfn_cli.archives``). ``LMFN_OFFLINE=1``
forbids downloads: archives already in the downloads folder are still verified and extracted.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .archives import extract_archives, is_extracted
from .download import checksums, download_file, is_offline, verify_file
from .errors import DatasetDownloadError, DatasetError
from .images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

DatasetProgress = Callable[[str, int, int | None], None]
"""``on_progress(archive_name, done, total)``: bytes of that archive so far, and its size if known."""


def data_dir() -> Path:
    """Where datasets are downloaded and extracted: ``LMFN_DATA_DIR``, else the user data dir
    (``platformdirs.user_data_path("lmfn") / "datasets"``)."""
    env = os.environ.get("LMFN_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("lmfn", appauthor=False) / "datasets"


# --- sources --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    """One file of a dataset: its name, and the checksum(s) it must match (at least one)."""

    filename: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    url: str | None = None
    """A full URL; None: the source's base URL plus ``filename``."""


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's archives come from and what they must hash to."""

    name: str
    """The folder under ``data_dir()`` it is extracted into."""
    title: str
    homepage: str
    base_url: str
    url_env: str
    """An environment variable that, when set, replaces ``base_url`` (a mirror)."""
    archives: tuple[Archive, ...]

    def url_for(self, archive: Archive, base_url: str | None = None) -> str:
        """The archive's URL: its own, else ``base_url`` / ``$url_env`` / ``self.base_url`` + name."""
        if archive.url and base_url is None:
            return archive.url
        base = base_url or os.environ.get(self.url_env) or self.base_url
        return (base if base.endswith("/") else base + "/") + archive.filename


# Köhler et al. 2012. The URLs and MD5 checksums are those of the `Kohler` dataset class of
# deepinv (github.com/deepinv/deepinv, deepinv/datasets/kohler.py: `archive_urls` and
# `archive_checksums`, which it passes as md5= to torchvision's download_and_extract_archive);
# identical at commits 02e6b4be64a9ebe95ae1a7d1ad6d76abc32d2a83 and
# a049234ac5bf3d691c9ff8edf06abf08518ac6ff. No SHA-256 is published. Layout after extracting
# all five into one folder (as deepinv reads it): BlurryI_J.png at the top, and
# ImageI/KernelJ/GroundTruthI_J_K.png, K = 1..199 (198 for (1,10), (1,12), (2,10), (3,7), (3,12),
# (4,12); 200 for (2,11)); I = image 1..4, J = trajectory 1..12.
KOHLER = DatasetSource(
    name="kohler",
    title="Köhler et al. 2012 (Recording and Playback of Camera Shake)",
    homepage="https://doi.org/10.1007/978-3-642-33786-4_3",
    base_url="http://people.kyb.tuebingen.mpg.de/rolfk/BenchmarkECCV2012/",
    url_env="LMFN_KOHLER_URL",
    archives=(
        Archive("GroundTruth_pngs_Image1.zip", md5="acb90b6d9bfdb4b2370e08a5fcb80e68"),
        Archive("GroundTruth_pngs_Image2.zip", md5="da440d3bf43b32bec0b7170ccd828f29"),
        Archive("GroundTruth_pngs_Image3.zip", md5="3a77c41c951367f35db52eb18496bbac"),
        Archive("GroundTruth_pngs_Image4.zip", md5="72ce9690c3ed1296358653396cf9576d"),
        Archive("BlurryImages.zip", md5="61ffb1434d93fca6c508976a7216d723"),
    ),
)

# GoPro (GOPRO_Large). The authors' page links GOPRO_Large.zip on Google Drive (file id
# 1y4wvPdOG3mojpFCHTqLgriexhbjoWVkK, not a direct download) and on their lab's server
# (http://data.cv.snu.ac.kr:8008/webdav/dataset/GOPRO/GOPRO_Large.zip), with no checksum
# (github.com/SeungjunNah/seungjunnah.github.io, Datasets/gopro.md, commit 11d02fb2b9ee...).
# The default here is the Hugging Face dataset snah/GOPRO_Large at a pinned revision, whose
# SHA-256 two independent projects pin identically (one of them at this revision); the authors
# publish none, so a mismatch is an error that names both hashes, never a silent use.
GOPRO_HOMEPAGE = "https://seungjunnah.github.io/Datasets/gopro"
GOPRO_ARCHIVE = "GOPRO_Large.zip"
GOPRO_URL = ("https://huggingface.co/datasets/snah/GOPRO_Large/resolve/"
             "592978466ae510d2734b199cad2fc79a346bda1c/GOPRO_Large.zip")
GOPRO_SHA256 = "24532c036712515cf33803704421311c91f6a080e76049d7e5e7fd22389f128e"
GOPRO_URL_ENV = "LMFN_GOPRO_URL"
GOPRO_SHA256_ENV = "LMFN_GOPRO_SHA256"


# --- items ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairItem:
    """A blurry image and its sharp ground truth; ``name`` identifies it in reports."""

    blurry: Path
    sharp: Path
    name: str


class PairList(list[PairItem]):
    """The pairs found (a list of ``PairItem``), plus the images that found no partner, so that
    callers can warn about them: ``unpaired_blurry`` and ``unpaired_sharp``."""

    def __init__(self, items: Iterable[PairItem] = (), unpaired_blurry: Iterable[Path] = (),
                 unpaired_sharp: Iterable[Path] = ()):
        super().__init__(items)
        self.unpaired_blurry: list[Path] = list(unpaired_blurry)
        self.unpaired_sharp: list[Path] = list(unpaired_sharp)


@dataclass(frozen=True)
class KohlerItem:
    """One blurry photo of the Köhler benchmark and the sharp frames of its trajectory (by frame
    number); ``image`` is 1..4, ``trajectory`` 1..12."""

    blurry: Path
    sharp: tuple[Path, ...]
    image: int
    trajectory: int

    @property
    def name(self) -> str:
        return f"Blurry{self.image}_{self.trajectory}"

    @property
    def middle(self) -> Path:
        """The middle sharp frame (the single reference deepinv's Kohler uses by default)."""
        return self.sharp[(len(self.sharp) - 1) // 2]


_BLURRY = re.compile(r"blurry(\d+)_(\d+)\.png", re.IGNORECASE)
_SHARP = re.compile(r"groundtruth(\d+)_(\d+)_(\d+)\.png", re.IGNORECASE)
_SKIP_DIRS = {"__MACOSX"}


def kohler_items(root: str | Path) -> list[KohlerItem]:
    """The Köhler benchmark under ``root``, by image then trajectory.

    Finds ``BlurryI_J.png`` and ``GroundTruthI_J_K.png`` anywhere below ``root`` (the extracted
    archives put them at the top and in ``ImageI/KernelJ/``). Raises ``DatasetError`` if there are
    no blurry images, a blurry image has no sharp frames, or a file appears twice.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "no such folder (expected the extracted Köhler et al. 2012 archives)")
    blurry: dict[tuple[int, int], Path] = {}
    sharp: dict[tuple[int, int], dict[int, Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if m := _BLURRY.fullmatch(name):
                key = (int(m[1]), int(m[2]))
                if key in blurry:
                    raise DatasetError(path, f"a second copy of {blurry[key]}; remove one")
                blurry[key] = path
            elif m := _SHARP.fullmatch(name):
                key, frame = (int(m[1]), int(m[2])), int(m[3])
                frames = sharp.setdefault(key, {})
                if frame in frames:
                    raise DatasetError(path, f"a second copy of {frames[frame]}; remove one")
                frames[frame] = path
    if not blurry:
        raise DatasetError(root, "no Köhler blurry images (BlurryI_J.png) below this folder; expected the "
                           "extracted archives: BlurryI_J.png and ImageI/KernelJ/GroundTruthI_J_K.png")
    missing = [key for key in sorted(blurry) if key not in sharp]
    if missing:
        i, j = missing[0]
        raise DatasetError(root, f"{len(missing)} blurry images have no sharp frames, e.g. Blurry{i}_{j}.png "
                           f"has no GroundTruth{i}_{j}_K.png (is an ImageI archive missing?)")
    items = [KohlerItem(blurry[k], tuple(p for _, p in sorted(sharp[k].items())), k[0], k[1]) for k in sorted(blurry)]
    log.info("%s: %d Köhler images with %d sharp frames", root, len(items), sum(len(i.sharp) for i in items))
    return items


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name``, ignoring case; None if there is none."""
    exact = folder / name
    if exact.is_dir():
        return exact
    try:
        return next((d for d in sorted(folder.iterdir()) if d.name.lower() == name and d.is_dir()), None)
    except OSError:
        return None


def _images_by_key(folder: Path) -> dict[str, Path]:
    """The images directly in ``folder`` (not hidden), keyed by lower-case stem."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        key = path.stem.lower()
        if key in found:
            raise DatasetError(path, f"has the same name as {found[key].name} apart from case or extension; "
                               "pairs are matched by name, so rename or remove one")
        found[key] = path
    return found


@dataclass
class _Tally:
    blur_dirs: int = 0
    blurry: int = 0
    sharp: int = 0


def _pair_folders(blur_dir: Path, sharp_dir: Path, prefix: str, into: PairList, tally: _Tally) -> None:
    """Add the pairs of ``blur_dir`` and ``sharp_dir`` (by name, ignoring case and extension)."""
    blur, sharp = _images_by_key(blur_dir), _images_by_key(sharp_dir)
    tally.blur_dirs += 1
    tally.blurry += len(blur)
    tally.sharp += len(sharp)
    for key in sorted(blur):
        if key in sharp:
            stem = blur[key].stem
            into.append(PairItem(blur[key], sharp[key], f"{prefix}/{stem}" if prefix else stem))
        else:
            into.unpaired_blurry.append(blur[key])
    into.unpaired_sharp.extend(sharp[k] for k in sorted(sharp) if k not in blur)


def _finish(root: Path, pairs: PairList, tally: _Tally, blur_name: str, sharp_name: str) -> PairList:
    if not pairs:
        where = "" if tally.blur_dirs == 1 else f" ({tally.blur_dirs} sequences)"
        raise DatasetError(root, f"no image pairs{where}: {tally.blurry} images in {blur_name}/ and {tally.sharp} "
                           f"in {sharp_name}/, none with the same name (pairs are matched by file name, "
                           "ignoring case and extension)")
    if pairs.unpaired_blurry or pairs.unpaired_sharp:
        log.info("%s: %d pairs; %d blurry and %d sharp images without a partner", root, len(pairs),
                 len(pairs.unpaired_blurry), len(pairs.unpaired_sharp))
    return pairs


_LAYOUTS = (("blur", "sharp"), ("input", "target"))


def pair_items(root: str | Path) -> PairList:
    """Blurry/sharp pairs in ``root``: ``blur/`` + ``sharp/``, ``input/`` + ``target/``, or
    sub-folders that each have one of these (GoPro's ``test/SEQUENCE/blur`` + ``sharp``).

    Images pair by file name without extension, ignoring case (``blur/A.PNG`` with
    ``sharp/a.jpg``). The result lists the pairs and, as ``unpaired_blurry`` / ``unpaired_sharp``,
    the images without a partner. Raises ``DatasetError`` (with the counts) if nothing pairs.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "no such folder")
    for blur_name, sharp_name in _LAYOUTS:
        blur_dir, sharp_dir = _child(root, blur_name), _child(root, sharp_name)
        if blur_dir and sharp_dir:
            pairs, tally = PairList(), _Tally()
            _pair_folders(blur_dir, sharp_dir, "", pairs, tally)
            return _finish(root, pairs, tally, blur_name, sharp_name)
        if blur_dir or sharp_dir:
            have, lack = (blur_name, sharp_name) if blur_dir else (sharp_name, blur_name)
            raise DatasetError(root, f"has {have}/ but no {lack}/")
    pairs, tally = PairList(), _Tally()
    names = ("blur", "sharp")
    for sub in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for blur_name, sharp_name in _LAYOUTS:
            blur_dir, sharp_dir = _child(sub, blur_name), _child(sub, sharp_name)
            if blur_dir and sharp_dir:
                _pair_folders(blur_dir, sharp_dir, sub.name, pairs, tally)
                names = (blur_name, sharp_name)
                break
    if not tally.blur_dirs:
        raise DatasetError(root, "expected blur/ + sharp/, input/ + target/, or sub-folders that each have them "
                           "(the GoPro layout: SEQUENCE/blur/*.png + SEQUENCE/sharp/*.png)")
    return _finish(root, pairs, tally, *names)


BLUR_VARIANTS = ("blur", "blur_gamma")


def gopro_items(root: str | Path, split: str = "test", blur_variant: str = "blur") -> PairList:
    """The GoPro (GOPRO_Large) pairs of ``split``: ``SEQUENCE/{blur_variant}/X.png`` with
    ``SEQUENCE/sharp/X.png``, named ``SEQUENCE/X``.

    ``root`` is the ``GOPRO_Large`` folder (holding ``train/`` and ``test/``), a folder holding
    ``GOPRO_Large/``, or the split's folder itself. ``blur_variant`` is ``"blur"`` (blur averaged
    in linear space, as most papers report) or ``"blur_gamma"`` (averaged after gamma 2.2).
    Raises ``DatasetError`` if the layout is not there or nothing pairs.
    """
    if blur_variant not in BLUR_VARIANTS:
        raise ValueError(f"blur_variant must be one of {', '.join(BLUR_VARIANTS)}, not {blur_variant!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "no such folder (expected GOPRO_Large, or its test/ folder)")

    def sequences(folder: Path) -> list[Path]:
        return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
                      and _child(d, blur_variant) and _child(d, "sharp"))

    candidates = [c for c in (_child(root, split), root / "GOPRO_Large" / split, root) if c and c.is_dir()]
    base, found = next(((c, s) for c in candidates if (s := sequences(c))), (None, []))
    if base is None:
        raise DatasetError(root, f"no GoPro sequences: expected {split}/SEQUENCE/{blur_variant}/*.png and "
                           f"{split}/SEQUENCE/sharp/*.png below this folder (the layout of GOPRO_Large.zip)")
    pairs, tally = PairList(), _Tally()
    for seq in found:
        _pair_folders(_child(seq, blur_variant), _child(seq, "sharp"), seq.name, pairs, tally)  # type: ignore[arg-type]
    return _finish(base, pairs, tally, blur_variant, "sharp")


# --- downloading ----------------------------------------------------------------------------------


def _prune(*folders: Path) -> None:
    """Remove the folders that are empty (innermost first); leave the others."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def fetch_dataset(
    source: DatasetSource,
    *,
    base_url: str | None = None,
    on_progress: DatasetProgress | None = None,
    validate: Callable[[Path], None] | None = None,
    keep_archives: bool = False,
    **download_kwargs,
) -> Path:
    """``data_dir()/source.name`` with ``source``'s archives extracted into it, downloading and
    verifying them first unless that folder is complete already; returns the folder.

    Archives already in ``data_dir()/downloads/NAME/`` are verified and used (also offline); the
    others are downloaded (``download_kwargs``: ``session``, ``retries``, ``backoff``,
    ``timeout``). ``validate(tmp)`` checks the extracted tree before it is put in place. The
    archives are deleted once extracted unless ``keep_archives``. Raises ``DatasetDownloadError``
    (HTTP errors, a checksum mismatch: nothing is kept), ``ArchiveError`` (an unsafe or corrupt
    archive: nothing is extracted), ``DatasetError`` (offline and an archive is missing).
    """
    root = data_dir() / source.name
    if is_extracted(root):
        return root
    if os.path.lexists(root):  # before downloading gigabytes that could not be extracted there
        raise DatasetError(root, f"exists but is not a complete extraction of {source.title}; lmfn does not "
                           "overwrite it: move it away or delete it (or pass its path if it is a copy you made)")
    downloads_root = data_dir() / "downloads"
    downloads = downloads_root / source.name
    paths = []
    try:
        missing = []
        for archive in source.archives:
            dest = downloads / archive.filename
            expected = checksums(sha256=archive.sha256, md5=archive.md5)
            if dest.is_file():
                mismatch = verify_file(dest, expected)
                if mismatch is None:
                    log.info("%s: verified, from an earlier download", dest)
                    paths.append(dest)
                    continue
                if is_offline():
                    algorithm, want, got = mismatch
                    raise DatasetError(dest, f"{algorithm.upper()} is {got}, expected {want}: replace it with "
                                       f"the file from {source.url_for(archive, base_url)}")
                log.warning("%s: checksum mismatch, downloading it again", dest)
                dest.unlink()
            if is_offline():
                missing.append(archive)
                continue
            url = source.url_for(archive, base_url)
            progress = None if on_progress is None else (lambda d, t, n=archive.filename: on_progress(n, d, t))
            paths.append(download_file(url, dest, sha256=archive.sha256, md5=archive.md5, size=archive.size,
                                       on_progress=progress, error=DatasetDownloadError, **download_kwargs))
        if missing:
            urls = ", ".join(source.url_for(a, base_url) for a in missing)
            raise DatasetError(downloads, f"LMFN_OFFLINE is set, so {source.title} is not downloaded: put "
                               f"{', '.join(a.filename for a in missing)} (from {urls}) in this folder to have them "
                               "verified and extracted, or extract them yourself and pass that folder's path")
        info = {"dataset": source.name, "title": source.title, "lmfn_version": __version__,
                "checksums": {a.filename: {k: v for k, v in (("md5", a.md5), ("sha256", a.sha256)) if v}
                              for a in source.archives}}
        extract_archives(paths, root, info=info, validate=validate)
    finally:
        _prune(downloads, downloads_root)
    if not keep_archives:
        for path in paths:
            path.unlink(missing_ok=True)
        _prune(downloads, downloads_root)
    return root


def fetch_kohler(on_progress: DatasetProgress | None = None, *, base_url: str | None = None,
                 source: DatasetSource | None = None, keep_archives: bool = False, **download_kwargs) -> Path:
    """The Köhler et al. 2012 benchmark, downloaded (MD5-verified) and extracted into
    ``data_dir()/kohler`` unless it is there already; returns that folder for ``kohler_items``.

    ``base_url`` (or ``LMFN_KOHLER_URL``) replaces the authors' server, e.g. with a mirror;
    ``source`` replaces the whole ``KOHLER`` entry (the tests use both). See ``fetch_dataset``.
    """

    def validate(tmp: Path) -> None:
        kohler_items(tmp)

    return fetch_dataset(source or KOHLER, base_url=base_url, on_progress=on_progress, validate=validate,
                         keep_archives=keep_archives, **download_kwargs)


def fetch_gopro(url: str | None = None, sha256: str | None = None, *, on_progress: DatasetProgress | None = None,
                keep_archives: bool = False, **download_kwargs) -> Path:
    """GOPRO_Large (about 9 GB), downloaded from ``url`` (or ``LMFN_GOPRO_URL``, else
    ``GOPRO_URL``), verified against ``sha256`` (or ``LMFN_GOPRO_SHA256``; ``GOPRO_SHA256`` for the
    default URL) and extracted into ``data_dir()/gopro`` unless it is there already; returns that
    folder for ``gopro_items``. Another URL needs its own SHA-256: lmfn downloads only what it can
    verify.
    """
    root = data_dir() / "gopro"
    if is_extracted(root):
        return root
    url = url or os.environ.get(GOPRO_URL_ENV) or GOPRO_URL
    sha256 = (sha256 or os.environ.get(GOPRO_SHA256_ENV) or (GOPRO_SHA256 if url == GOPRO_URL else "")).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DatasetError(None, f"{GOPRO_URL_ENV} is given but {GOPRO_SHA256_ENV} is "
                           f"{'missing' if not sha256 else 'not a SHA-256 (64 hex digits)'}: lmfn downloads "
                           f"only what it can verify; give the SHA-256 of {GOPRO_ARCHIVE}")
    source = DatasetSource(name="gopro", title="GoPro (GOPRO_Large)", homepage=GOPRO_HOMEPAGE, base_url=url,
                           url_env=GOPRO_URL_ENV, archives=(Archive(GOPRO_ARCHIVE, sha256=sha256, url=url),))

    def validate(tmp: Path) -> None:
        gopro_items(tmp, "test")

    return fetch_dataset(source, on_progress=on_progress, validate=validate, keep_archives=keep_archives,
                         **download_kwargs)
