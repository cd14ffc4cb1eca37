"""LMFN weights: safetensors files that carry their model config in the metadata.

A weights file holds the model's tensors (fp32 or fp16) and string metadata:

    format        "lmfn-weights/1"
    config        LMFNConfig as JSON (everything needed to rebuild the network)
    variant       the variant name it was built from, if known
    lmfn_version  the version of lmfn that wrote it
    ...           anything else the writer adds (training summary, data, licence)

Pickle checkpoints (``torch.save``) are never loaded: unpickling runs arbitrary code.

Named weights live in ``REGISTRY``: each entry pins a file's SHA-256 and size, so a download is
verified before it lands in the cache (``cache_dir()``). The default entry is also bundled in
the wheel (``bundled_path()``), so ``load_model()`` works offline right after ``pip install``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from .download import CHUNK_SIZE, ProgressCallback, download_file, file_sha256, is_offline  # noqa: F401
from .files import atomic_path
from .errors import ConfigError, DownloadError, NoWeightsError, UnknownWeightsError, WeightsError
from .model import LMFN, LMFNConfig

log = logging.getLogger(__name__)

FORMAT = "lmfn-weights/1"


def save_weights(
    model: LMFN,
    path: str | Path,
    *,
    variant: str | None = None,
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model``'s weights and config to a safetensors file, atomically.

    ``dtype`` is the storage type (float32 or float16); loading always gives float32.
    """
    path = Path(path)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT, config=model.config.to_json(), lmfn_version=__version__)
    if variant:
        meta["variant"] = variant
    tensors = {
        k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _sniff(path: Path) -> None:
    """Reject files that are plainly not safetensors, with a message that says what they are."""
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
    except FileNotFoundError:
        raise WeightsError(path, "no such weights file") from None
    except IsADirectoryError:
        raise WeightsError(path, "is a directory, not a weights file") from None
    except OSError as exc:
        raise WeightsError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(head) == 9 and head[8:9] == b"{":
        return  # an 8-byte header length, then the JSON header: safetensors
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        raise WeightsError(
            path,
            "is a PyTorch pickle checkpoint; lmfn loads only .safetensors weights "
            "(unpickling can run arbitrary code)",
        )
    raise WeightsError(path, "is not a safetensors file (empty, truncated or another format)")


def read_weights(path: str | Path) -> tuple[LMFNConfig, dict[str, torch.Tensor], dict[str, str]]:
    """Read a weights file: (config, float32 CPU state dict, metadata). Raises WeightsError."""
    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:
        raise WeightsError(path, f"is not a valid safetensors file (corrupt or truncated?): {exc}") from exc
    if "config" not in metadata:
        raise WeightsError(path, "has no LMFN config in its metadata (not an lmfn weights file?)")
    try:
        config = LMFNConfig.from_json(metadata["config"])
    except (ConfigError, TypeError) as exc:
        raise WeightsError(path, f"has an invalid LMFN config: {exc}") from exc
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return config, tensors, metadata


# --- the registry of named weights ----------------------------------------------------------


@dataclass(frozen=True)
class WeightsEntry:
    """One named weights file: where it comes from, what it must hash to, and what it is."""

    name: str
    filename: str
    """The file's name in the repository's ``weights/``, in the cache and on the server."""
    sha256: str
    size: int
    """Bytes; a download that grows past this is stopped."""
    licence: str
    training_data: str
    config: LMFNConfig
    description: str


REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in (
        WeightsEntry(
            name="lmfn-synthblur-v0",
            filename="lmfn-synthblur-v0.safetensors",
            sha256="303164dc3302769b5e5d2048c7299c947485605b937d46ec268a6c1fe3be987e",
            size=2_510_488,
            licence="research only: trained on photos licensed for non-commercial research (BSDS500)",
            training_data="BSDS500 train+test and Urban100 with lmfn synth blur; GoPro-style averages "
            "of one GOPRO_Large training sequence (GOPR0477_11_00)",
            config=LMFNConfig(global_residual=True),
            description="lmfn-residual, fp16, 1.6 h on a 2-core CPU: mild sharpening (+0.5 to +0.8 dB)",
        ),
        WeightsEntry(
            name="lmfn-synthblur-v1",
            filename="lmfn-synthblur-v1.safetensors",
            sha256="06182aa7791b6af5605669adc2f2597c8fa507ce8791e64ccc4504546014454a",
            size=2_510_488,
            licence="research only: trained on photos licensed for non-commercial research (BSDS500)",
            training_data="as lmfn-synthblur-v0 (which it continues): BSDS500 train+test and Urban100 with "
            "lmfn synth blur; GoPro-style averages of one GOPRO_Large training sequence (GOPR0477_11_00)",
            config=LMFNConfig(global_residual=True),
            description="lmfn-residual, fp16, v0 + 1.5 h more on a 2-core CPU: mild sharpening (+0.6 to +0.9 dB)",
        ),
        WeightsEntry(
            name="lmfn-synthblur-v2",
            filename="lmfn-synthblur-v2.safetensors",
            sha256="ee96420ee1dadd0b2f1b1772a41a46354a11df7937f507f9440bf60d17cddc34",
            size=2_510_704,
            licence="research only: trained on photos licensed for non-commercial research (BSDS500)",
            training_data="v1 continued on an H100: BSDS500 train+test and Urban100 (half size) with lmfn synth "
            "blur made afresh; GoPro-style averages of one GOPRO_Large training sequence (GOPR0477_11_00)",
            config=LMFNConfig(global_residual=True),
            description="lmfn-residual, fp16, v1 + 10.5 min on an H100: mild sharpening (+0.51 to +0.79 dB on the validation table)",
        ),
        WeightsEntry(
            name="lmfn-synthblur-v7",
            filename="lmfn-synthblur-v7.safetensors",
            sha256="569ee70848c14638fd0ef5bd240a47816135ab52f8e41f576bf664d00b2fb4ec",
            size=2_514_872,
            licence="research only: trained on photos licensed for non-commercial research (BSDS500)",
            training_data="v2 continued on a 2-core CPU on unbiased pairs (issue 27): BSDS500 train+test and "
            "Urban100 blurred on the fly (zero-mean noise, half in sRGB values, 20% unblurred as exact "
            "identities, 10% barely blurred), 15% GoPro-style averages of GOPR0477_11_00 frames 0-249",
            config=LMFNConfig(global_residual=True),
            description="lmfn-residual, fp16, v2 + runs v6 and v7 on a 2-core CPU: leaves sharp photos alone (identity 47.8 dB), "
            "mild deblurring; not the default: short of v2 by 0.05-0.13 dB on the linear-light synthetic rows",
        ),
        WeightsEntry(
            name="lmfn-nonblind-v1",
            filename="lmfn-nonblind-v1.safetensors",
            sha256="f65fb681eff55e037fb1489e027edfe75b84fc58a8b4d75516c40d93d183a2f7",
            size=2_513_720,
            licence="research only: trained on photos licensed for non-commercial research (BSDS500)",
            training_data="v7 continued for 7,000 steps on a 2-core CPU (issue 29, recipes/lmfn-nonblind-v1.toml): "
            "BSDS500 train+test and Urban100 blurred by random shake trajectories, the training gyro recordings "
            "and USRNet kernels, then Wiener-deconvolved (prior 5e-3) by kernels perturbed the way estimation errs",
            config=LMFNConfig(global_residual=True),
            description="lmfn-residual, fp16: the kernel method's non-blind stage (--deconvolution network); takes "
            "a Wiener deconvolution, not a blurry photo (task=nonblind in its metadata)",
        ),
        WeightsEntry(
            name="lmfn-nonblind-v2",
            filename="lmfn-nonblind-v2.safetensors",
            sha256="5d3ca998340bf2ca6e823c66138d81920cb1c73e8ce112102156545017b03a86",
            size=2_513_480,
            licence="research only: trained on photos licensed for non-commercial research (BSDS500)",
            training_data="lmfn-nonblind-v1 continued for 30,000 steps on a 2-core CPU (issue 29, "
            "recipes/lmfn-nonblind-v2.toml): the same pairs, half of them blurred in sRGB values; "
            "the moving average at the last step",
            config=LMFNConfig(global_residual=True),
            description="lmfn-residual, fp16: the kernel method's default non-blind stage (--deconvolution "
            "network), v1 trained further; takes a Wiener deconvolution, not a blurry photo",
        ),
    )
}
DEFAULT_NAME = "lmfn-synthblur-v2"

# Releases upload every file of weights/ as an asset of the "weights" release; LMFN_WEIGHTS_URL
# points elsewhere (a mirror, a file server).
DEFAULT_BASE_URL = "https://github.com/lmfn-project/lmfn/releases/download/weights/"
BUNDLED_DIR = "bundled"  # inside the lmfn_cli package; setup.py copies the default there


def get_entry(name: str) -> WeightsEntry:
    """The registry entry called ``name``; ``UnknownWeightsError`` lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownWeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``LMFN_CACHE_DIR``, else the user cache dir."""
    env = os.environ.get("LMFN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("lmfn", appauthor=False) / "weights"


def base_url() -> str:
    """The URL weights files are fetched from (``LMFN_WEIGHTS_URL`` or the release assets)."""
    url = os.environ.get("LMFN_WEIGHTS_URL") or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def url_for(entry: WeightsEntry, base: str | None = None) -> str:
    """The base URL plus the file's name as it stands in ``weights/``."""
    base = base_url() if base is None else base if base.endswith("/") else base + "/"
    return base + entry.filename


def cached_path(entry: WeightsEntry) -> Path:
    """Where ``entry`` is (or would be) in the cache."""
    return cache_dir() / entry.filename


def bundled_path(entry: WeightsEntry | None = None) -> Path | None:
    """The copy of ``entry`` (default: the default weights) that ships with lmfn, or None.

    An installed wheel carries it inside the package; a source checkout or an editable install
    uses the repository's ``weights/`` folder.
    """
    entry = entry or REGISTRY[DEFAULT_NAME]
    candidates = []
    try:
        packaged = resources.files(__package__) / BUNDLED_DIR / entry.filename
        if isinstance(packaged, Path):  # a zipped install would need extracting; pip never does that
            candidates.append(packaged)
    except (ModuleNotFoundError, TypeError):
        pass
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():  # a source tree, not site-packages
        candidates.append(checkout / "weights" / entry.filename)
    return next((p for p in candidates if p.is_file()), None)


def check_file(entry: WeightsEntry, path: Path) -> None:
    """Raise ``WeightsError`` unless ``path`` has ``entry``'s size and SHA-256."""
    size = path.stat().st_size
    if size != entry.size:
        raise WeightsError(path, f"is {size} bytes, but {entry.name} is {entry.size} bytes "
                           f"(replace it: lmfn download-weights --force {entry.name})")
    actual = file_sha256(path)
    if actual != entry.sha256:
        raise WeightsError(path, f"SHA-256 {actual} does not match {entry.name}'s {entry.sha256} "
                           f"(replace it: lmfn download-weights --force {entry.name})")


def download(
    entry: WeightsEntry,
    dest_dir: str | Path,
    *,
    base_url: str | None = None,
    on_progress: ProgressCallback | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    session=None,
    timeout: float = 30.0,
) -> Path:
    """Download ``entry`` into ``dest_dir`` and return its path; only a verified file lands there.

    The bytes stream into ``FILE.part``; after a dropped connection, a short body or a 5xx the
    download resumes with an HTTP Range request, up to ``retries`` more times, waiting
    ``backoff * 2**k`` seconds. The size, the SHA-256 and the safetensors header are checked
    before ``FILE.part`` is renamed to ``FILE`` (an atomic replace). ``on_progress(done, total)``
    is called as bytes arrive. Raises ``DownloadError`` (404, other HTTP errors, a server that
    ignores Range, a hash mismatch, giving up), or ``NoWeightsError`` when ``LMFN_OFFLINE`` is set.
    (The transfer itself is ``lmfn_cli.download.download_file``, shared with the datasets.)
    """
    dest_dir = Path(dest_dir)
    url = url_for(entry, base_url)
    final = dest_dir / entry.filename
    if is_offline():
        raise NoWeightsError(final, f"LMFN_OFFLINE is set, so {entry.name} is not downloaded; "
                             f"put the file from {url} at this path")

    def usable(part: Path) -> None:
        try:
            read_weights(part)
        except WeightsError as exc:
            raise DownloadError(url, f"not usable LMFN weights ({exc.problem}); the download was deleted") from None

    return download_file(url, final, sha256=entry.sha256, size=entry.size, session=session, retries=retries,
                         backoff=backoff, timeout=timeout, on_progress=on_progress, check=usable,
                         error=DownloadError, not_found_hint="is LMFN_WEIGHTS_URL right?")


def fetch(name: str, *, force: bool = False, on_progress: ProgressCallback | None = None, **kwargs) -> Path:
    """The cached file of weights ``name``, downloading it unless it is there and verified.

    ``force`` downloads again even then. Offline (``LMFN_OFFLINE``), a missing file raises
    ``NoWeightsError`` naming the path to put it at and the URL to get it from.
    """
    entry = get_entry(name)
    path = cached_path(entry)
    if not force and path.is_file():
        try:
            check_file(entry, path)
            return path
        except WeightsError as exc:
            if is_offline():
                raise
            log.warning("%s; downloading it again", exc)
    if force:
        Path(f"{path}.part").unlink(missing_ok=True)
    return download(entry, path.parent, on_progress=on_progress, **kwargs)


def resolve_weights(path: str | Path | None = None, name: str | None = None, *,
                    on_progress: ProgressCallback | None = None) -> Path:
    """The weights file to use: ``path``; else weights ``name`` from the cache (downloaded if
    missing, or the bundled copy when that is the same file); else the bundled default.

    Logs (INFO) which one was used.
    """
    if path is not None and name is not None:
        raise ConfigError("give a weights file or a weights name, not both")
    if path is not None:
        log.info("weights: %s (--weights)", path)
        return Path(path)
    if name is not None:
        entry = get_entry(name)
        cached = cached_path(entry)
        bundled = bundled_path(entry)
        if not cached.is_file() and bundled is not None:
            log.info("weights: %s, bundled (%s)", name, bundled)
            return bundled
        found = fetch(name, on_progress=on_progress)
        log.info("weights: %s from the cache (%s)", name, found)
        return found
    bundled = bundled_path()
    if bundled is not None:
        log.info("weights: bundled default %s (%s)", DEFAULT_NAME, bundled)
        return bundled
    cached = cached_path(REGISTRY[DEFAULT_NAME])
    if cached.is_file():
        log.info("weights: default %s from the cache (%s)", DEFAULT_NAME, cached)
        return cached
    raise NoWeightsError(None, f"this installation has no bundled weights and {DEFAULT_NAME} is not in the "
                         f"cache ({cached}); run lmfn download-weights, or pass --weights FILE.safetensors")


def load_model(
    path: str | Path | None = None, device: str | torch.device = "cpu", *, name: str | None = None
) -> LMFN:
    """Build the network a weights file describes, load it, and put it in eval mode on ``device``.

    ``path`` is a weights file (or an ONNX file from ``lmfn export --onnx``, run by ONNX Runtime
    on the CPU); ``name`` a registry name (from the cache, downloaded if missing); neither means
    the bundled default. Problems raise ``WeightsError`` naming the file.
    """
    # A plain path is not resolved again: the CLI resolves first (and logs which weights) itself.
    path = Path(path) if path is not None and name is None else resolve_weights(path, name)
    if path.suffix.lower() == ".onnx":  # exported by `lmfn export --onnx`: ONNX Runtime, CPU only
        from .onnxrt import OnnxLMFN

        log.info("loaded %s (ONNX Runtime)", path)
        return OnnxLMFN(path).to(device).eval()
    config, tensors, metadata = read_weights(path)
    model = LMFN(config)
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise WeightsError(path, f"tensor shapes do not match its own config: {first}") from exc
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {len(result.missing_keys)} tensors (e.g. {result.missing_keys[0]})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})")
        raise WeightsError(path, "does not match its own config: " + ", ".join(parts))
    log.info("loaded %s (%s, lmfn %s)", path, metadata.get("variant", "custom"), metadata.get("lmfn_version", "?"))
    return model.to(device).eval()
