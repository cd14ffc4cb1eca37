"""From the inputs of a batch (files, folders, glob patterns, URIs) to the image and video files
it takes, and the problems found on the way, each an ``ImageError`` naming its entry.

A regular file named as an input is taken, and in a folder every name with an image or video
suffix that resolves to a regular file (through symbolic links). Whatever else the file system
holds there is one problem, never an exception or a hang:

- a broken symbolic link, a symbolic link loop, an entry that cannot be looked at (permission
  denied, a path too long for the system) or that disappeared while its folder was read;
- a FIFO, socket or device file named like an image (``x.png``), or given as an input: it is
  looked at with ``stat`` only, never opened (opening a FIFO for reading waits for a writer);
- a folder that cannot be listed.

In a folder, entries whose names are not images' (``notes.txt``, a socket ``agent.sock``, a
broken link ``latest``) are not inputs and are passed over without a word, as are hidden names
(``.x``) and anything below the output folder (``exclude``). ``recursive`` walks sub-folders,
and so does ``**`` in a pattern, with an explicit stack (no recursion limit, however deep the
tree), and neither follows symbolic links to folders, as ``find`` and ``Path.rglob`` do not: a
link to a parent would loop, a link elsewhere would take files from outside the folder. Each
link not followed by ``recursive`` is logged as a warning; give the link itself as an input to
take its folder.

Names that are not valid UTF-8 keep their bytes (as ``os.fsdecode`` gives them: lone surrogates,
so the files open); ``errors.one_line`` shows those bytes as ``\\xNN`` in messages.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import logging
import os
import stat
from pathlib import Path

from .errors import ImageError, one_line
from .images import IMAGE_EXTENSIONS
from .uris import URI, expand_uri, has_glob, is_uri
from .video import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

__all__ = ["expand_inputs", "real_path"]

_SUFFIXES = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
_SPECIAL = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device"}


def real_path(path: Path | URI) -> Path | URI:
    """``path`` with every symbolic link resolved, as far as they go: never raises, where
    ``Path.resolve`` raises RuntimeError on a link loop (Python 3.11). A URI is itself."""
    return Path(os.path.realpath(path)) if isinstance(path, Path) else path.resolve()


def _stat_problem(path: Path, exc: OSError, *, listed: bool) -> str:
    """Why ``os.stat(path)`` failed, in a few words. ``listed``: the entry was just listed in its
    folder (so "no such file" means it went away meanwhile)."""
    if exc.errno == errno.ENOENT:
        try:
            target = os.readlink(path)
        except OSError:
            return "disappeared while its folder was read" if listed else "no such file or folder"
        return f"broken symbolic link (to {target}, which does not exist)"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long for the system (ENAMETOOLONG)"
    if exc.errno == errno.ENOTDIR:
        return "no such file or folder (a part of the path is a file, not a folder)"
    return f"cannot look at it ({exc.strerror or exc})"


def _folder_problem(exc: OSError) -> str:
    """Why a folder could not be listed."""
    if exc.errno == errno.ENOENT:
        return "folder disappeared while it was read"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: cannot list this folder"
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long for the system (ENAMETOOLONG): cannot list this folder"
    return f"cannot list this folder ({exc.strerror or exc})"


def _not_a_file(st: os.stat_result, link: bool) -> str:
    kind = _SPECIAL.get(stat.S_IFMT(st.st_mode), "not a regular file")
    what = kind if kind == "not a regular file" else f"is {kind}"
    return f"{what}{' (through a symbolic link)' if link else ''}, not an image file"


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _excluded(path: Path, exclude: Path | URI | None) -> bool:
    return isinstance(exclude, Path) and real_path(path).is_relative_to(exclude)


def _images_in(folder: Path, recursive: bool, exclude: Path | URI | None) -> tuple[list[Path], list[ImageError]]:
    """The image and video files in ``folder`` (below it too with ``recursive``), sorted, and the
    problems met: entries named like images that are not regular files or cannot be looked at,
    and sub-folders that cannot be listed. See the module's docstring for what is passed over."""
    found: list[Path] = []
    problems: list[ImageError] = []
    pending = [folder]  # a stack, not recursion: a tree of any depth is fine
    while pending:
        here = pending.pop()
        try:
            with os.scandir(here) as listing:
                entries = list(listing)
        except OSError as exc:
            problems.append(ImageError(here, _folder_problem(exc)))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = here / entry.name
            if recursive and entry.is_dir(follow_symlinks=False):  # d_type: no system call on Linux
                if not _excluded(path, exclude):  # do not feed earlier results (OUT inside an input folder) back in
                    pending.append(path)
                continue
            if path.suffix.lower() not in _SUFFIXES:
                if recursive and entry.is_symlink() and _is_folder(path):
                    _not_followed(path)
                continue  # not an image, whatever it is
            try:
                st = os.stat(path)  # never open(): a FIFO would wait for a writer
            except OSError as exc:
                problems.append(ImageError(path, _stat_problem(path, exc, listed=True)))
                continue
            if stat.S_ISREG(st.st_mode):
                if not _excluded(path, exclude):
                    found.append(path)
            elif stat.S_ISDIR(st.st_mode):  # a folder named like an image: without -r passed over as any
                if recursive:  # sub-folder is; with -r real folders were taken above, so this is a link
                    _not_followed(path)
            else:
                problems.append(ImageError(path, _not_a_file(st, entry.is_symlink())))
    problems.sort(key=lambda p: p.path)
    return sorted(found), problems


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def _not_followed(link: Path) -> None:
    log.warning("%s: symbolic link to a folder, not followed by -r (give it as an input to take its images)",
                one_line(link))


def _exists(path: Path) -> bool:
    """Whether there is an entry at ``path`` (a broken link too); True also where it cannot be
    looked at, so that the problem is reported for it rather than as a missing file."""
    try:
        os.lstat(path)
    except OSError as exc:
        return exc.errno not in (errno.ENOENT, errno.ENOTDIR)
    return True


def _expand_local(path: Path, recursive: bool, exclude: Path | URI | None,
                  found: list[tuple[Path | URI, Path]], problems: list[ImageError]) -> None:
    """One local input (a file or folder named, or one match of a pattern) into ``found`` and
    ``problems``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        problems.append(ImageError(path, _stat_problem(path, exc, listed=False)))
        return
    if stat.S_ISDIR(st.st_mode):
        images, inner = _images_in(path, recursive, exclude)
        problems += inner
        if not images and not inner:
            hint = "" if recursive else " (use -r for sub-folders)"
            problems.append(ImageError(path, f"folder holds no images{hint}"))
        found += [(p, p.relative_to(path)) for p in images]
    elif stat.S_ISREG(st.st_mode):
        found.append((path, Path(path.name)))
    else:
        problems.append(ImageError(path, _not_a_file(st, _is_link(path))))


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, sorted, except that ``**`` walks folders as ``-r``
    does: with a stack, not recursion, and not into symbolic links to folders (``glob.glob``
    follows them, and two links to a parent make it list ``2**40`` paths)."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return sorted(glob.glob(pattern))
    paths = [os.sep] if parts[0] == "" else [""]
    for i, part in enumerate(parts[1:] if parts[0] == "" else parts):
        last = i == len(parts) - (2 if parts[0] == "" else 1)
        if part == "**":
            paths = [p for base in paths for p in _below(base, files=last)]
        elif has_glob(part):  # as glob: a wildcard matches a hidden name only if the pattern starts with "."
            paths = [os.path.join(base, name) for base in paths for name in _names(base)
                     if fnmatch.fnmatchcase(name, part) and (part.startswith(".") or not name.startswith("."))]
        elif part:
            paths = [os.path.join(base, part) for base in paths]
    return sorted({p for p in paths if p and os.path.lexists(p)})


def _names(folder: str) -> list[str]:
    try:
        return os.listdir(folder or os.curdir)
    except OSError:
        return []


def _below(base: str, *, files: bool) -> list[str]:
    """``base`` and every folder below it (and with ``files`` every file too), hidden names and
    symbolic links to folders left out; what cannot be listed is passed over, as glob does."""
    found, pending = [base], [base]
    while pending:
        here = pending.pop()
        try:
            with os.scandir(here or os.curdir) as listing:
                entries = [e for e in listing if not e.name.startswith(".")]
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(here, entry.name)
            if entry.is_dir(follow_symlinks=False):
                found.append(path)
                pending.append(path)
            elif files:
                found.append(path)
    return found


def expand_inputs(inputs: list[str], *, recursive: bool = False,
                  exclude: Path | URI | None = None) -> tuple[list[tuple[Path | URI, Path]], list[ImageError]]:
    """Inputs -> ``(file, path relative to the output folder)`` pairs and the problems found.

    A file keeps its name; a folder's images keep their path below the folder; a glob's
    matches keep their names. An existing path is never treated as a pattern. ``exclude``: a
    folder (resolved, as ``real_path`` gives it) whose files are left out.
    """
    found: list[tuple[Path | URI, Path]] = []
    problems: list[ImageError] = []
    for text in inputs:
        if is_uri(text):
            uris, uri_problems = expand_uri(text, _SUFFIXES, recursive=recursive,
                                            exclude=exclude if isinstance(exclude, URI) else None)
            found += [(u, Path(rel)) for u, rel in uris]
            problems += uri_problems
            continue
        item = Path(text)
        if _exists(item) or not has_glob(text):
            matches = [item]
        else:
            matches = [Path(m) for m in _glob(text)]
            if not matches:
                problems.append(ImageError(text, "no files match this pattern"))
                continue
        for path in matches:
            _expand_local(path, recursive, exclude, found, problems)
    return found, problems
