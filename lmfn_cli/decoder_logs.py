"""What the image decoders say while they decode a file, routed to the log naming that file.

tifffile and imagecodecs (libpng) log, Pillow warns, and the libtiff inside Pillow prints straight
to stderr, about damaged files, in lines that name no file. While a thread decodes a file (inside
``with decoding(name):``, as ``images.read_picture`` does) all three go to this module's logger
at DEBUG naming the file (``lmfn -vv`` shows them); a damaged file already gets its own one error
line. Outside a decode, logs and warnings pass as before (libtiff's to this logger at INFO). The hooks are installed when this
module is imported (``images`` imports it).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import one_line

__all__ = ["decoding"]

log = logging.getLogger(__name__)

# The file this thread is decoding (``decoding`` sets it), for the filter and the hooks below.
_decoding = threading.local()


@contextmanager
def decoding(name: str | Path) -> Iterator[None]:
    """While the block runs, what the decoders log or warn in this thread is about ``name``."""
    previous = getattr(_decoding, "name", None)
    _decoding.name = name
    try:
        yield
    finally:
        _decoding.name = previous


class _DecoderLogs(logging.Filter):
    """While a thread decodes a file, hold back what tifffile and imagecodecs (libpng) log about
    it: their lines name no file ("<tifffile.TiffPage 0 @8> incorrect StripByteCounts count",
    "PNG warning: eXIf: CRC error"), and a damaged file already gets its own one error line. They
    go to this module's logger at DEBUG instead, naming the file (``lmfn -vv`` shows them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = getattr(_decoding, "name", None)
        if name is None:
            return True
        log.debug("%s: %s says: %s", one_line(name), record.name, one_line(record.getMessage()))
        return False


_DECODER_LOGS = _DecoderLogs()
for _name in ("tifffile", "imagecodecs"):
    logging.getLogger(_name).addFilter(_DECODER_LOGS)

_show_warning = warnings.showwarning


def _decoder_warning(message, category, filename, lineno, file=None, line=None):
    """The same for Python warnings (Pillow's "Corrupt EXIF data", "Truncated File Read"): they
    name no file and print two raw lines on stderr. A warning raised in a thread while it
    decodes goes to DEBUG naming the file; every other warning is shown as before. (A hook, as
    ``logging.captureWarnings`` installs one: ``warnings.catch_warnings`` is not thread-safe,
    and files are decoded in a background thread.)"""
    name = getattr(_decoding, "name", None)
    if name is None:
        return _show_warning(message, category, filename, lineno, file, line)
    log.debug("%s: %s: %s", one_line(name), category.__name__, one_line(message))


warnings.showwarning = _decoder_warning


_TIFF_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)


@_TIFF_HANDLER
def _libtiff_message(module: bytes | None, fmt: bytes | None, _args) -> None:
    """And for libtiff inside Pillow, which prints "LZWDecode: Not enough data at scanline 0"
    straight to stderr: the message (its printf format, unformatted: the arguments are a C
    va_list) goes to DEBUG naming the file, or to this module's logger at INFO outside a decode."""
    text = f"{(module or b'libtiff').decode('latin-1')}: {(fmt or b'').decode('latin-1')}"
    name = getattr(_decoding, "name", None)
    if name is None:
        log.info("libtiff: %s", text)
    else:
        log.debug("%s: libtiff says: %s", one_line(name), one_line(text))


def _route_libtiff_messages() -> None:
    """Point the error and warning handlers of the libtiff that Pillow loaded at
    ``_libtiff_message``. Linux only (the library is found in /proc/self/maps); elsewhere
    libtiff keeps printing its lines."""
    try:
        importlib.import_module("PIL._imaging")  # loads Pillow's libtiff

        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libtiff" in line.split()[-1]}  # the path field
        for path in paths:
            lib = ctypes.CDLL(path)  # the library already loaded: dlopen returns it
            for setter in ("TIFFSetErrorHandler", "TIFFSetWarningHandler"):
                getattr(lib, setter).restype = ctypes.c_void_p
                getattr(lib, setter)(_libtiff_message)
    except (OSError, AttributeError, ImportError) as exc:
        log.debug("libtiff messages stay on stderr: %s", exc)


_route_libtiff_messages()
