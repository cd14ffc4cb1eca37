"""Resumable, checksum-verified HTTP downloads, shared by named weights and benchmark datasets.

``download_file(url, dest, sha256=... or md5=...)`` streams into ``DEST.part``, resumes after a
dropped connection with an HTTP Range request, and renames the part file to ``DEST`` only once
its checksum matches. A checksum mismatch deletes the part file. ``LMFN_OFFLINE`` is checked by
the callers (``is_offline()``), which know what to tell the user instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from .errors import FetchError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 16
"""Bytes per read; a connection that drops mid-chunk loses that chunk's bytes, not the file's."""

ProgressCallback = Callable[[int, int | None], None]
"""``on_progress(done, total)``: bytes so far, and the file's size (None while it is unknown)."""

ErrorFactory = Callable[[str, str], Exception]
"""Builds the error to raise from ``(url, problem)``, e.g. ``DownloadError`` or ``DatasetDownloadError``."""


class _Retry(Exception):
    """A failure worth another attempt: a 5xx, a dropped connection, a short body."""


def is_offline() -> bool:
    """``LMFN_OFFLINE=1`` (or true/yes/on): never touch the network."""
    return os.environ.get("LMFN_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest (``sha256``, ``md5``, or any ``hashlib`` name) of a file's bytes."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    return file_digest(path, "sha256")


def checksums(*, sha256: str | None = None, md5: str | None = None) -> dict[str, str]:
    """The expected digests given, as {algorithm: lower-case hex}; at least one is required."""
    expected = {name: value.strip().lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    if not expected:
        raise ValueError("a download needs a checksum: give sha256= or md5=")
    return expected


def verify_file(path: Path, expected: dict[str, str]) -> tuple[str, str, str] | None:
    """None if ``path`` has every digest in ``expected``; else (algorithm, expected, actual)."""
    for algorithm, want in expected.items():
        got = file_digest(path, algorithm)
        if got != want:
            return algorithm, want, got
    return None


_LABEL = {"sha256": "SHA-256", "md5": "MD5"}


def download_file(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    session=None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
    on_progress: ProgressCallback | None = None,
    check: Callable[[Path], None] | None = None,
    error: ErrorFactory = FetchError,
    not_found_hint: str = "",
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``; only a verified file ever lands there.

    The bytes stream into ``DEST.part`` (a part file left by an earlier run is resumed). After a
    dropped connection, a short body, a 429 or a 5xx the download resumes with an HTTP Range
    request, up to ``retries`` more times, waiting ``backoff * 2**k`` seconds. When the transfer
    is complete, the part file is checked against ``sha256`` and/or ``md5`` (at least one is
    required; MD5 only where the publisher gives nothing better: it detects corruption, not a
    deliberate substitution), then by ``check(part)`` if given, and only then renamed to ``dest``
    (an atomic replace). A mismatch, or an exception from ``check``, deletes the part file.

    ``size`` (bytes), when known, stops a server that sends more and lets progress show a total;
    otherwise the total comes from the response headers. ``on_progress(done, total)`` is called
    as bytes arrive. Failures raise ``error(url, problem)``: a 404 (with ``not_found_hint``),
    other HTTP errors, a server that ignores Range after an interruption, a checksum mismatch,
    giving up after the retries (the part file is kept, so running again resumes).
    """
    import requests

    expected = checksums(sha256=sha256, md5=md5)
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return _download_into(url, dest, part, expected, size, session, retries, backoff, timeout, on_progress, check,
                              error, not_found_hint)
    except OSError as exc:
        if isinstance(exc, requests.RequestException):
            raise
        # the local side: a cache folder that cannot be made or written, a full disk
        where = exc.filename or part
        raise error(url, f"cannot write {where}: {exc.strerror or exc}") from None


def _download_into(url: str, dest: Path, part: Path, expected: dict, size: int | None, session, retries: int,
                   backoff: float, timeout: float, on_progress: ProgressCallback | None,
                   check: Callable[[Path], None] | None, error: ErrorFactory, not_found_hint: str) -> Path:
    import requests

    own_session = session is None
    session = session or requests.Session()
    try:
        failures = 0
        while True:
            try:
                _fetch(session, url, part, size, timeout, on_progress, error, not_found_hint)
                break
            except _Retry as exc:
                failures += 1
                if failures > retries:
                    raise error(url, f"gave up after {failures} attempts: {exc} "
                                f"(run again to resume from {part})") from None
                wait = backoff * 2 ** (failures - 1)
                log.warning("%s: %s; retrying in %.0f s (%d of %d)", url, exc, wait, failures, retries)
                time.sleep(wait)
    finally:
        if own_session:
            session.close()
    mismatch = verify_file(part, expected)
    if mismatch:
        algorithm, want, got = mismatch
        part.unlink()
        raise error(url, f"{_LABEL.get(algorithm, algorithm)} mismatch: expected {want}, got {got}; "
                    "the download was deleted and nothing was cached")
    if check is not None:
        try:
            check(part)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    log.info("downloaded %s to %s (%s verified)", url, dest, ", ".join(_LABEL.get(a, a) for a in expected))
    return dest


def _total_from(resp, have: int) -> int | None:
    """The whole file's size as the response states it (Content-Range, else Content-Length)."""
    if resp.status_code == 206:
        match = re.match(r"bytes \d+-\d+/(\d+)", resp.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _fetch(session, url: str, part: Path, size: int | None, timeout: float,
           on_progress: ProgressCallback | None, error: ErrorFactory, not_found_hint: str) -> None:
    """One attempt: append to ``part`` from where it stops until the body (or ``size``) is complete."""
    import requests

    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # not a prefix of this file: start over
        part.unlink()
        have = 0
    if size is not None and have == size:
        return
    total = size
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with session.get(url, headers=headers, stream=True, timeout=timeout) as resp:
            status = resp.status_code
            if status == 404:
                raise error(url, "not found (HTTP 404)" + (f"; {not_found_hint}" if not_found_hint else ""))
            if status >= 500 or status == 429:
                raise _Retry(f"HTTP {status} {resp.reason}")
            if status == 416:
                # Asked for bytes past the end: complete already if the server's size is ours.
                if size is None and resp.headers.get("Content-Range", "") == f"bytes */{have}":
                    return
                part.unlink()  # our partial file does not fit the server's: start over
                raise _Retry("HTTP 416 (range not satisfiable); restarting from zero")
            if status not in (200, 206):
                raise error(url, f"HTTP {status} {resp.reason}")
            if have and status == 200:
                # A full body after a Range request: resuming is impossible with this server.
                part.unlink()
                raise error(url, "the server ignores HTTP Range requests, so the interrupted "
                            "download cannot be resumed; the partial file was deleted, "
                            "run the command again to start over")
            if status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                part.unlink()
                raise error(url, f"the server answered a request for bytes {have}- with "
                            f"{resp.headers.get('Content-Range')!r}; the partial file was deleted")
            if total is None:
                total = _total_from(resp, have)
            with part.open("ab" if have else "wb") as fh:
                for chunk in resp.iter_content(chunk_size=CHUNK_SIZE):
                    have += len(chunk)
                    if size is not None and have > size:
                        fh.close()
                        part.unlink()
                        raise error(url, f"the server sent more than the expected {size} "
                                    "bytes; the download was deleted")
                    fh.write(chunk)
                    if on_progress:
                        on_progress(have, total)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        of = f" of {total}" if total is not None else ""
        raise _Retry(f"connection failed after {have}{of} bytes ({type(exc).__name__})") from None
    if total is not None and have < total:
        raise _Retry(f"the body ended after {have} of {total} bytes")
