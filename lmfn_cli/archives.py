"""Safe extraction of zip and tar archives: all or nothing, never outside the target folder.

``extract_archives([a, b], dest)`` checks every member of every archive before writing
anything, extracts into a temporary folder beside ``dest``, writes a marker file, and renames
the folder to ``dest``. So ``dest`` either does not exist or holds a complete extraction (its
marker says so); a refused member, a corrupt archive or an interruption leaves nothing behind.

Refused: names that are absolute (``/x``, ``C:x``) or contain ``..``; paths that go through a
symbolic link of the archive; symbolic or hard links whose target lies outside ``dest`` (or, for
hard links, is a symbolic link); device files, FIFOs and other special members; links in zip
archives (``zipfile`` would write them as plain files holding the target's name).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import ArchiveError, DatasetError

log = logging.getLogger(__name__)

MARKER = ".lmfn-extracted.json"
"""Written last into an extracted folder: its presence means the extraction is complete."""


def is_extracted(dest: str | Path) -> bool:
    """Whether ``dest`` holds a complete extraction (its marker file is there)."""
    return (Path(dest) / MARKER).is_file()


def extract_archive(archive: str | Path, dest: str | Path, *, info: Mapping[str, object] | None = None,
                    validate: Callable[[Path], None] | None = None) -> Path:
    """Extract one zip or tar archive (any compression ``tarfile`` reads) into ``dest``.

    See ``extract_archives``.
    """
    return extract_archives([archive], dest, info=info, validate=validate)


def extract_archives(archives: Sequence[str | Path], dest: str | Path, *,
                     info: Mapping[str, object] | None = None,
                     validate: Callable[[Path], None] | None = None) -> Path:
    """Extract ``archives`` (in order) into the new folder ``dest``, atomically; return ``dest``.

    A ``dest`` that holds a complete extraction already is returned untouched; one that exists
    without the marker raises ``DatasetError`` (lmfn never overwrites a folder it did not finish).
    Every member is checked before anything is written; a refused one raises ``ArchiveError``
    naming the archive and the member. ``validate(tmp)`` may check the extracted tree (raise to
    refuse it) before the marker, which records ``info`` and the archives' names, is written.
    On any failure the temporary folder is removed and ``dest`` does not exist.
    """
    dest = Path(dest)
    if is_extracted(dest):
        log.info("%s: extracted already", dest)
        return dest
    if os.path.lexists(dest):
        raise DatasetError(dest, f"exists but is not a complete extraction (no {MARKER}); "
                           "lmfn does not overwrite it: move it away or delete it, then run again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    try:
        for archive in archives:
            _extract_into(Path(archive), tmp)
        if validate is not None:
            validate(tmp)
        marker = {**(info or {}), "archives": [Path(a).name for a in archives]}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("extracted %s into %s", ", ".join(Path(a).name for a in archives), dest)
    return dest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _extract_into(archive: Path, target: Path) -> None:
    """Check every member of ``archive``, then extract them all into ``target``."""
    if not archive.is_file():
        raise ArchiveError(archive, "no such archive")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for member in members:
                    _check_zip_member(archive, member)
                for member in members:
                    zf.extract(member, target)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                _check_tar_members(archive, members)
                if hasattr(tarfile, "data_filter"):  # a second line of defence (Python 3.12, 3.11.4+)
                    tf.extractall(target, members=members, filter="data")
                else:
                    tf.extractall(target, members=members)
        else:
            raise ArchiveError(archive, "is neither a zip nor a tar archive")
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, RuntimeError, ValueError) as exc:
        raise ArchiveError(archive, f"cannot be extracted (corrupt or truncated?): {exc}") from exc


def _refuse(archive: Path, name: str, why: str) -> ArchiveError:
    return ArchiveError(archive, f"refusing to extract member {name!r}: {why}; nothing was extracted")


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The member's path as components, refusing absolute paths and ``..``."""
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise _refuse(archive, name, "absolute path")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _refuse(archive, name, "'..' in its path would place it outside the target folder")
    return parts


def _check_zip_member(archive: Path, member: zipfile.ZipInfo) -> None:
    _member_parts(archive, member.filename)
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _refuse(archive, member.filename, "a symbolic link (not extracted from zip archives)")
    kind = stat.S_IFMT(mode)  # 0 when the writer recorded no file type (zipfile.writestr does not)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise _refuse(archive, member.filename, "a device file or other special file")


def _check_tar_members(archive: Path, members: Sequence[tarfile.TarInfo]) -> None:
    """Refuse unsafe names, special files, paths through links, and links that point out."""
    paths = {id(m): _member_parts(archive, m.name) for m in members}
    symlinks = {paths[id(m)]: m for m in members if m.issym()}
    for member in members:
        parts = paths[id(member)]
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise _refuse(archive, member.name, "a device file, FIFO or other special file")
        for i in range(1, len(parts)):
            if parts[:i] in symlinks:
                raise _refuse(archive, member.name, f"its path goes through the symbolic link {'/'.join(parts[:i])!r}")
        if parts in symlinks and symlinks[parts] is not member:
            raise _refuse(archive, member.name, "it would replace a symbolic link of the archive")
        if (member.issym() or member.islnk()) and not parts:
            raise _refuse(archive, member.name, "a link without a name")
        if member.issym():
            target = member.linkname.replace("\\", "/")
            if target.startswith("/") or re.match(r"[A-Za-z]:", target):
                raise _refuse(archive, member.name, f"a symbolic link to the absolute path {member.linkname!r}")
            _resolve_link(archive, member, parts[:-1], target, symlinks, hard=False)
        elif member.islnk():
            _resolve_link(archive, member, (), member.linkname.replace("\\", "/"), symlinks, hard=True)


def _resolve_link(archive: Path, member: tarfile.TarInfo, start: tuple[str, ...], target: str,
                  symlinks: Mapping[tuple[str, ...], tarfile.TarInfo], *, hard: bool) -> None:
    """Walk ``target`` from ``start``: it must stay inside and not pass through a symbolic link."""
    kind = "hard" if hard else "symbolic"
    if target.startswith("/"):
        raise _refuse(archive, member.name, f"a {kind} link to the absolute path {member.linkname!r}")
    here = list(start)
    steps = [p for p in target.split("/") if p not in ("", ".")]
    for i, step in enumerate(steps):
        if step == "..":
            if not here:
                raise _refuse(archive, member.name, f"a {kind} link to {member.linkname!r}, outside the target folder")
            here.pop()
            continue
        here.append(step)
        last = i == len(steps) - 1
        if tuple(here) in symlinks and (hard or not last):
            raise _refuse(archive, member.name, f"a {kind} link to {member.linkname!r}, through a symbolic link")
