"""A small MATLAB v5 reader (numeric arrays and cells, compressed or not) and USRNet's kernels_12.mat."""

from __future__ import annotations

import logging
import math
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import FileProblem

log = logging.getLogger(__name__)


_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_CELL = 1
_MX_NUMERIC = range(6, 16)  # double, single, int8 .. uint64


class _Unsupported:
    def __init__(self, what: str):
        self.what = what


def _mat_elements(buf: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each data element in ``buf``, in the MAT v5 tag format."""
    pos = 0
    while pos + 8 <= len(buf):
        (word,) = struct.unpack_from(order + "I", buf, pos)
        if word >> 16:  # "small data element": type and size share one word, data in the next
            yield word & 0xFFFF, buf[pos + 4 : pos + 4 + (word >> 16)]
            pos += 8
            continue
        mtype, nbytes = struct.unpack_from(order + "II", buf, pos)
        start = pos + 8
        if start + nbytes > len(buf):
            raise ValueError("truncated data element")
        yield mtype, buf[start : start + nbytes]
        # elements are padded to 8 bytes, except compressed ones
        pos = start + nbytes + (0 if mtype == _MI_COMPRESSED else -nbytes % 8)


def _mat_matrix(payload: bytes, order: str) -> tuple[str, object]:
    if not payload:  # MATLAB writes an empty array as an empty miMATRIX
        return "", np.zeros((0, 0))
    els = _mat_elements(payload, order)
    flags = np.frombuffer(next(els)[1], order + "u4")[0]
    dims = tuple(int(d) for d in np.frombuffer(next(els)[1], order + "i4"))
    name = next(els)[1].decode("latin-1")
    cls = int(flags & 0xFF)
    if cls == _MX_CELL:
        cells = [_mat_matrix(p, order)[1] for t, p in els if t == _MI_MATRIX]
        if len(cells) != math.prod(dims):
            raise ValueError(f"cell {name!r} has {len(cells)} elements for dimensions {dims}")
        out = np.empty(len(cells), dtype=object)
        for i, c in enumerate(cells):
            out[i] = c
        return name, out.reshape(dims, order="F")
    if cls in _MX_NUMERIC and not flags & 0x800:  # real numeric (0x800: complex)
        mtype, data = next(els)
        if mtype not in _MI_TYPES:
            raise ValueError(f"array {name!r} stored as unknown type {mtype}")
        values = np.frombuffer(data, order + _MI_TYPES[mtype]).astype(np.float64)
        if values.size != math.prod(dims):
            raise ValueError(f"array {name!r} has {values.size} values for dimensions {dims}")
        return name, values.reshape(dims, order="F")  # MATLAB is column-major
    return name, _Unsupported(f"MATLAB class {cls}" + (" (complex)" if flags & 0x800 else ""))


def _read_mat_v5(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    if data[:10] == b"MATLAB 7.3":
        raise ValueError("MATLAB v7.3 (HDF5) files are not supported; save with -v7 or -v6")
    if len(data) < 128 or not data.startswith(b"MATLAB 5.0") or data[126:128] not in (b"IM", b"MI"):
        raise ValueError("not a MATLAB v5 MAT-file")
    order = "<" if data[126:128] == b"IM" else ">"
    out: dict[str, object] = {}
    for mtype, payload in _mat_elements(data[128:], order):
        if mtype == _MI_COMPRESSED:
            inner = list(_mat_elements(zlib.decompress(payload), order))
        else:
            inner = [(mtype, payload)]
        for itype, ipayload in inner:
            if itype == _MI_MATRIX:
                name, value = _mat_matrix(ipayload, order)
                out[name] = value
    return out


def _normalised_kernel(k: np.ndarray, where: str) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or not np.isfinite(k).all() or k.sum() <= 0:
        raise ValueError(f"{where} is not a finite 2-D kernel with positive sum")
    k = np.maximum(k, 0)  # tiny negative round-off in stored kernels is not light
    return (k / k.sum()).astype(np.float32)


def load_usrnet_kernels(path: str | Path) -> list[np.ndarray]:
    """Read USRNet/DPIR's ``kernels_12.mat``: a MATLAB v5 file whose ``kernels`` is a 1x12 cell.

    Kernels 0-3 are isotropic Gaussians, 4-7 anisotropic Gaussians, 8-11 motion blur (25x25).
    Parsed by a small built-in MAT v5 reader (numeric arrays and cells, compressed or not), so
    scipy is not needed. Returns float32 kernels, negatives set to 0, each summing to 1.
    Raises ``FileProblem`` naming the file when it is missing or not such a file.
    """
    path = Path(path)
    try:
        variables = _read_mat_v5(path)
        cell = variables.get("kernels")
        if cell is None:
            raise ValueError(f"no variable 'kernels' (has: {', '.join(sorted(variables)) or 'none'})")
        if isinstance(cell, _Unsupported):
            raise ValueError(f"'kernels' is a {cell.what}, not a cell of numeric arrays")
        arrays = cell.ravel(order="F") if cell.dtype == object else [cell]
        kernels = []
        for i, k in enumerate(arrays):
            if isinstance(k, _Unsupported):
                raise ValueError(f"kernels{{{i + 1}}} is a {k.what}")
            kernels.append(_normalised_kernel(np.squeeze(k), f"kernels{{{i + 1}}}"))
    except FileNotFoundError:
        raise FileProblem(path, "no such file") from None
    except (OSError, ValueError, KeyError, StopIteration, struct.error, zlib.error) as exc:
        raise FileProblem(path, f"cannot read USRNet kernels ({exc})") from None
    log.debug("read %d kernels from %s", len(kernels), path)
    return kernels
