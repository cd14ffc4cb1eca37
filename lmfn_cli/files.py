"""Writing files atomically: a temporary file beside the target, then a rename (or a link)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(dest: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder; on success it becomes ``dest`` with the
    permissions a newly created file would have (mkstemp's are 0600), on failure it is removed.

    An interrupted write (exception, Ctrl-C, kill) never leaves a partial ``dest``. Without
    ``overwrite``, an existing ``dest`` raises ``OutputExistsError`` and stays as it was, even if
    it appeared while the temporary file was being written.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, dest)
        else:
            _move_new(tmp, dest)
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
