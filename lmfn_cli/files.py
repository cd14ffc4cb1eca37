"""Writing files atomically: a temporary file beside the target, then a rename (or a link)."""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError

log = logging.getLogger(__name__)


def _host() -> str:
    """This machine's name as it goes into temporary file names (letters, digits, - and _)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def temporary_prefix(dest: Path) -> str:
    """``.NAME.lmfn-HOST-PID.``: the start of every temporary file ``atomic_path`` makes for
    ``dest``, so a later run can tell whose it is and whether its writer is still alive."""
    return f".{dest.name}.lmfn-{_host()}-{os.getpid()}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_temporary(dest: str | Path) -> Path:
    """A new empty temporary file in ``dest``'s folder (made if missing), named for ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=temporary_prefix(dest), suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(name)


def publish(tmp: Path, dest: Path, *, overwrite: bool = True) -> None:
    """Give ``tmp`` the permissions of a new file and rename it to ``dest``. Without
    ``overwrite`` an existing ``dest`` raises ``OutputExistsError`` (``tmp`` is left for the
    caller to remove)."""
    os.chmod(tmp, 0o666 & ~_umask())
    if overwrite:
        os.replace(tmp, dest)
    else:
        _move_new(tmp, dest)


@contextmanager
def atomic_path(dest: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder; on success it becomes ``dest`` with the
    permissions a newly created file would have (mkstemp's are 0600), on failure it is removed.

    An interrupted write (exception, Ctrl-C, kill) never leaves a partial ``dest``. Without
    ``overwrite``, an existing ``dest`` raises ``OutputExistsError`` and stays as it was, even if
    it appeared while the temporary file was being written.
    """
    dest = Path(dest)
    tmp = new_temporary(dest)
    try:
        yield tmp
        publish(tmp, dest, overwrite=overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _move_new(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest`` unless ``dest`` exists: a hard link never replaces a file."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputExistsError(dest, "output exists already (use --overwrite to replace it)") from None
    except OSError:  # no hard links on this filesystem: check, then rename (a small race)
        if os.path.lexists(dest):
            raise OutputExistsError(dest, "output exists already (use --overwrite to replace it)") from None
        os.replace(tmp, dest)
    else:
        tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.lmfn-(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+\.part")


def is_stale_temporary(file_name: str, dest_names: set[str]) -> bool:
    """Whether ``file_name`` is a temporary ``atomic_path`` (or ``uris.write_bytes``) made for one
    of ``dest_names`` on this machine, by a process that no longer exists."""
    m = _TEMPORARY.fullmatch(file_name)
    return bool(m) and m["name"] in dest_names and m["host"] == _host() and not _alive(int(m["pid"]))


def remove_stale_temporaries(dests: list[Path]) -> list[Path]:
    """Remove the temporary files a killed run left for ``dests``; return those removed.

    Only files named by ``temporary_prefix`` for one of ``dests``, made on this machine by a
    process that no longer exists, are removed: a temporary of a run still writing (another
    ``lmfn deblur`` on the same folder) or of another machine (a shared disk) is left alone.
    """
    by_folder: dict[Path, set[str]] = {}
    for d in dests:
        by_folder.setdefault(Path(d).parent, set()).add(Path(d).name)
    removed = []
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # no folder yet: nothing stale in it
        for entry in entries:
            if not is_stale_temporary(entry.name, names):
                continue
            if entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                except OSError:
                    continue
                removed.append(Path(entry.path))
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", len(removed))
    return removed
