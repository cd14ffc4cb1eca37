"""Files named by URI (``s3://bucket/in/a.png``, ``gs://...``, ``hdfs://...``, ``file:///...``):
the few path operations a batch needs, over a pyarrow filesystem.

A ``URI`` behaves like the ``pathlib.Path`` of a local file where a batch uses one (``name``,
``stem``, ``suffix``, ``parent``, ``/``, ``with_name``, ``exists``, ``read_bytes``), and
``str(uri)`` is the URI itself, so records, errors and reports name it as the user wrote it.
The filesystem comes from ``pyarrow.fs.FileSystem.from_uri``: credentials, region and endpoint
are the filesystem's own settings (for S3 the usual ``AWS_*`` variables or an instance role;
``AWS_ENDPOINT_URL`` for MinIO, Ceph or another S3-compatible store). One filesystem is made per
scheme and host in each process, and a ``URI`` pickles as its text, so Ray workers rebuild it.

Writes keep the rule of local files: nothing partial is ever visible under the final name. The
bytes go to a temporary object beside the target (``.NAME.lmfn-HOST-PID.RANDOM.part``), which is
then moved into place: a rename on local and HDFS filesystems, a server-side copy on object
stores, where an object appears whole or not at all. (Writing the final key directly would not
be enough: pyarrow completes an unfinished upload when its stream is garbage-collected.)
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConfigError, ImageError, OutputExistsError
from .files import is_stale_temporary, temporary_prefix
from .images import Picture, encode_picture, format_of, read_picture, write_picture

log = logging.getLogger(__name__)

__all__ = ["URI", "is_uri", "has_glob", "location", "expand_uri", "list_images", "read_picture_at", "write_picture_at",
           "write_bytes", "remove_stale_temporaries", "can_write"]

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://(?P<rest>.*)$")  # two letters at least: not C://
_filesystems: dict[str, tuple[Any, str]] = {}
_lock = threading.Lock()


def is_uri(text: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (``s3://b/k``, ``file:///tmp/x``); False for local paths."""
    return isinstance(text, (str, URI)) and _SCHEME.match(str(text)) is not None


def _pyarrow_fs():
    try:
        import pyarrow.fs
    except ImportError:
        raise ConfigError("URIs (s3://, gs://, ...) need pyarrow: pip install 'lmfn[cloud]'") from None
    return pyarrow.fs


class URI:
    """A file or folder named by URI. Immutable and hashable; ``str()`` gives the URI back
    (normalised: no trailing slash, no ``.`` or empty parts)."""

    __slots__ = ("_scheme", "_host", "_parts")

    def __init__(self, text: str) -> None:
        m = _SCHEME.match(str(text))
        if m is None:
            raise ValueError(f"not a URI: {text!r}")
        if "?" in m["rest"] or "#" in m["rest"]:
            raise ConfigError(f"{text}: URIs with a query or fragment are not supported; set the filesystem's "
                              "options in its environment (for S3: AWS_ENDPOINT_URL, AWS_REGION, ...)")
        host, _, path = m["rest"].partition("/")
        parts = tuple(p for p in path.split("/") if p not in ("", "."))
        if ".." in parts:
            raise ConfigError(f"{text}: '..' is not allowed in a URI")
        self._scheme, self._host, self._parts = m["scheme"].lower(), host, parts

    @classmethod
    def _of(cls, scheme: str, host: str, parts: tuple[str, ...]) -> "URI":
        new = cls.__new__(cls)
        new._scheme, new._host, new._parts = scheme, host, parts
        return new

    # -- pathlib's names ----------------------------------------------------------------------

    def __str__(self) -> str:
        return f"{self._scheme}://{self._host}/" + "/".join(self._parts)

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URI) and (self._scheme, self._host, self._parts) == (other._scheme, other._host, other._parts)

    def __hash__(self) -> int:
        return hash((self._scheme, self._host, self._parts))

    def __reduce__(self):
        return URI, (str(self),)

    def __truediv__(self, other: str | os.PathLike) -> "URI":
        extra = tuple(p for p in PurePosixPath(other).parts if p not in ("", ".", "/"))
        if ".." in extra:
            raise ConfigError(f"{other}: '..' is not allowed in a URI")
        return URI._of(self._scheme, self._host, self._parts + extra)

    @property
    def name(self) -> str:
        return self._parts[-1] if self._parts else ""

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix if self.name else ""

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem if self.name else ""

    @property
    def parent(self) -> "URI":
        return URI._of(self._scheme, self._host, self._parts[:-1])

    @property
    def parts(self) -> tuple[str, ...]:
        return self._parts

    def with_name(self, name: str) -> "URI":
        return self.parent / name

    def resolve(self) -> "URI":
        return self

    def is_relative_to(self, other: "URI | Path") -> bool:
        return (isinstance(other, URI) and (self._scheme, self._host) == (other._scheme, other._host)
                and self._parts[: len(other._parts)] == other._parts)

    def relative_to(self, other: "URI") -> PurePosixPath:
        if not self.is_relative_to(other):
            raise ValueError(f"{self} is not below {other}")
        return PurePosixPath(*self._parts[len(other._parts):])

    # -- the filesystem -----------------------------------------------------------------------

    @property
    def root(self) -> str:
        """``scheme://host``: URIs with one root share a filesystem."""
        return f"{self._scheme}://{self._host}"

    def filesystem(self) -> tuple[Any, str]:
        """(the pyarrow filesystem, this URI's path on it)."""
        fs, prefix = _filesystem(self.root)
        return fs, prefix + "/".join(self._parts)

    def _info(self):
        fs, path = self.filesystem()
        try:
            return fs.get_file_info(path)
        except OSError as exc:
            raise OSError(f"{self}: {_one_line(exc)}") from None

    def exists(self) -> bool:
        return self._info().type.name != "NotFound"

    def is_dir(self) -> bool:
        return self._info().type.name == "Directory"

    def is_file(self) -> bool:
        return self._info().type.name == "File"

    def read_bytes(self) -> bytes:
        fs, path = self.filesystem()
        with fs.open_input_stream(path) as f:
            return f.read()


def _filesystem(root: str) -> tuple[Any, str]:
    """The filesystem of ``scheme://host`` and the prefix its paths take (``bucket/`` for S3,
    ``/`` for ``file://``), made once per process: ``from_uri`` may ask the store for a region."""
    with _lock:
        if root not in _filesystems:
            pafs = _pyarrow_fs()
            probe = "lmfn-probe-name"
            try:
                fs, path = pafs.FileSystem.from_uri(f"{root}/{probe}")
            except (OSError, ValueError, TypeError) as exc:  # pyarrow: ArrowInvalid is a ValueError
                raise ConfigError(f"{root}: no filesystem for this URI ({_one_line(exc)})") from None
            _filesystems[root] = (fs, path[: -len(probe)])
        return _filesystems[root]


def location(text: str | os.PathLike) -> Path | URI:
    """``text`` as a ``URI`` when it is one, else as a local ``Path``."""
    return text if isinstance(text, (URI, Path)) else URI(str(text)) if is_uri(text) else Path(text)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- listing ------------------------------------------------------------------------------------


def list_images(folder: URI, suffixes: set[str], *, recursive: bool = False,
                exclude: URI | None = None) -> list[URI]:
    """Files below ``folder`` whose suffix (lower case) is in ``suffixes``, sorted; hidden
    names (``.x``) and anything below ``exclude`` are left out. OSError if it cannot be listed."""
    pafs = _pyarrow_fs()
    fs, path = folder.filesystem()
    try:
        infos = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=recursive, allow_not_found=True))
    except OSError as exc:
        raise OSError(f"{folder}: cannot list ({_one_line(exc)})") from None
    base = path.rstrip("/")
    found = []
    for info in infos:
        if info.type.name != "File":
            continue
        rel = PurePosixPath(info.path[len(base):].lstrip("/"))
        if any(p.startswith(".") for p in rel.parts) or rel.suffix.lower() not in suffixes:
            continue
        uri = folder / rel
        if exclude is not None and uri.is_relative_to(exclude):
            continue
        found.append(uri)
    return sorted(found, key=str)


def has_glob(text: str) -> bool:
    """Whether ``text`` holds a glob pattern (``*``, ``?`` or ``[``)."""
    return any(ch in text for ch in "*?[")


def expand_uri(text: str, suffixes: set[str], *, recursive: bool = False,
               exclude: URI | None = None) -> tuple[list[tuple[URI, PurePosixPath]], list[ImageError]]:
    """``batch.expand_inputs`` for one URI: a file keeps its name, a folder's files keep their
    path below it, a pattern in the last part (``s3://b/in/*.png``) keeps the names it matches."""
    import fnmatch

    try:
        uri = URI(text)
    except ConfigError as exc:
        return [], [ImageError(text, str(exc).removeprefix(f"{text}: "))]
    try:
        if uri.is_file():
            return [(uri, PurePosixPath(uri.name))], []
        if uri.is_dir():
            found = list_images(uri, suffixes, recursive=recursive, exclude=exclude)
            if not found:
                hint = "" if recursive else " (use -r for sub-folders)"
                return [], [ImageError(uri, f"folder holds no images{hint}")]
            return [(f, f.relative_to(uri)) for f in found], []
        if has_glob(uri.name) and not any(has_glob(p) for p in uri.parent.parts):
            matches = [f for f in list_images(uri.parent, suffixes, exclude=exclude) if fnmatch.fnmatchcase(f.name, uri.name)]
            if not matches:
                return [], [ImageError(text, "no files match this pattern")]
            return [(f, PurePosixPath(f.name)) for f in matches], []
    except ConfigError as exc:  # no such filesystem, or no pyarrow
        return [], [ImageError(text, str(exc).removeprefix(f"{uri.root}: "))]
    except OSError as exc:
        return [], [ImageError(text, _one_line(exc))]
    if has_glob(text):
        return [], [ImageError(text, "a URI may have a pattern in its last part only")]
    return [], [ImageError(uri, "no such file or folder")]


def read_picture_at(source: Path | URI, *, max_pixels: int | None) -> Picture:
    """``images.read_picture`` of a local path or a URI (ImageError naming it if unreadable)."""
    if not isinstance(source, URI):
        return read_picture(source, max_pixels=max_pixels)
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise ImageError(source, "no such file") from None
    except OSError as exc:
        raise ImageError(source, f"cannot read ({_one_line(exc)})") from None
    return read_picture(data, name=source, max_pixels=max_pixels)


def write_picture_at(dest: Path | URI, picture: Picture, *, quality: int = 95, strip_metadata: bool = False,
                     overwrite: bool = False) -> None:
    """``images.write_picture`` to a local path or a URI (format from the suffix): atomic
    either way, ``OutputExistsError`` without ``overwrite``, ImageError naming ``dest`` else."""
    if not isinstance(dest, URI):
        write_picture(dest, picture, format_of(dest), quality=quality, strip_metadata=strip_metadata, overwrite=overwrite)
        return
    try:
        if not overwrite and dest.exists():  # before encoding, as for local files
            raise OutputExistsError(dest, "output exists already (use --overwrite to replace it)")
        data = encode_picture(picture, format_of(dest), quality=quality, strip_metadata=strip_metadata, name=dest)
        write_bytes(dest, data, overwrite=overwrite)
    except ImageError as exc:
        raise ImageError(dest, exc.problem) from None
    except OSError as exc:
        raise ImageError(dest, f"cannot write ({_one_line(exc)})") from None


# -- writing ------------------------------------------------------------------------------------

_OBJECT_STORES = {"s3", "gcs"}  # no folders to make: a key's prefix is enough


def write_bytes(dest: URI, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``dest`` through a temporary object and a move (see the module's
    docstring). Without ``overwrite`` an existing ``dest`` raises ``OutputExistsError`` and is
    left as it was (checked just before the move: a small race, as on filesystems without hard
    links). OSError when the store refuses; no temporary is left either way."""
    fs, path = dest.filesystem()
    tmp_uri = dest.parent / f"{temporary_prefix(Path(dest.name))}{secrets.token_hex(4)}.part"
    _, tmp = tmp_uri.filesystem()
    if fs.type_name not in _OBJECT_STORES:
        fs.create_dir(dest.parent.filesystem()[1], recursive=True)
    try:
        stream = fs.open_output_stream(tmp)
        try:
            stream.write(data)
        finally:
            stream.close()  # the whole of ``data`` is written, or the exception is on its way
        if not overwrite and dest.exists():
            raise OutputExistsError(dest, "output exists already (use --overwrite to replace it)")
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass  # never made, or moved already
        raise


def can_write(folder: URI) -> bool:
    """Whether a small object can be written into ``folder`` and removed again (what each Ray
    node checks before a run)."""
    probe = folder / f".lmfn-probe-{secrets.token_hex(6)}"
    try:
        write_bytes(probe, b"")
        fs, path = probe.filesystem()
        fs.delete_file(path)
    except (OSError, OutputExistsError):
        return False
    return True


def remove_stale_temporaries(dests: list[URI]) -> list[URI]:
    """``files.remove_stale_temporaries`` for URIs: remove the temporaries that processes of
    this machine which no longer run left for ``dests``; return those removed."""
    by_folder: dict[URI, set[str]] = {}
    for d in dests:
        by_folder.setdefault(d.parent, set()).add(d.name)
    removed: list[URI] = []
    if not dests:
        return removed
    pafs = _pyarrow_fs()
    for folder, names in by_folder.items():
        fs, path = folder.filesystem()
        try:
            infos = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), allow_not_found=True))
        except OSError:
            continue
        for info in infos:
            if info.type.name != "File" or not is_stale_temporary(info.base_name, names):
                continue
            try:
                fs.delete_file(info.path)
            except OSError:
                continue
            removed.append(folder / info.base_name)
    if removed:
        log.info("removed %d temporary object(s) left by an interrupted run", len(removed))
    return removed
