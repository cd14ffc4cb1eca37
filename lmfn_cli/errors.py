"""Typed errors raised by the lmfn library. The CLI maps them to messages and exit codes."""

from __future__ import annotations

from pathlib import Path

# Control characters as backslash escapes: \n, \t, \r by name, the others as \xNN; and the bytes
# of a name that is not valid UTF-8 (which os.fsdecode gives as lone surrogates U+DC80..U+DCFF) as \xNN.
_ESCAPES = ({i: f"\\x{i:02x}" for i in [*range(32), 127]} | {10: "\\n", 9: "\\t", 13: "\\r"}
            | {0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)})


def one_line(text: object) -> str:
    """``str(text)`` with control characters (newline, tab, ...) written as backslash escapes, so
    that a file name can never break a one-line message or a tab-separated result line, and the
    bytes of a name that is not UTF-8 as ``\\xNN``, so that it can be printed on any stream. Names
    without either come back unchanged; ``--json`` output keeps them exactly."""
    return str(text).translate(_ESCAPES)


class LMFNError(Exception):
    """Base class of every error the library raises on purpose."""


class ConfigError(LMFNError, ValueError):
    """An invalid model configuration or variant name."""


class FileProblem(LMFNError):
    """A problem with one file; ``str()`` is one line: ``PATH: problem``."""

    def __init__(self, path: str | Path | None, problem: str):
        # a local path becomes a Path; a URI (``uris.URI``, or its text) stays as it is
        local = isinstance(path, Path) or isinstance(path, str) and "://" not in path
        self.path = Path(path) if local else path
        self.problem = problem
        super().__init__(f"{one_line(path)}: {one_line(problem)}" if path is not None else one_line(problem))


class WeightsError(FileProblem):
    """A weights file that cannot be used: missing, corrupt, pickled, or not LMFN's."""


class NoWeightsError(WeightsError):
    """No weights were given and none are bundled or cached."""


class ImageError(FileProblem):
    """An input image that cannot be read, or an output that cannot be written."""


class OutputExistsError(ImageError):
    """The output file exists already and overwriting was not asked for."""


class KernelError(FileProblem):
    """A blur-kernel file (``--kernel``) that cannot be used: unreadable, not 2-D, negative,
    empty or too large."""


class UnknownWeightsError(ConfigError):
    """A weights name that is not in the registry; the message lists the known names."""


class FetchError(LMFNError):
    """A download failed, or what arrived failed verification; ``str()`` is one line: ``URL: problem``.

    The base of ``DownloadError`` (weights) and ``DatasetDownloadError`` (benchmark datasets).
    """

    def __init__(self, url: str, problem: str):
        # Not a path: Path() would fold the URL's "//".
        LMFNError.__init__(self, f"{url}: {problem}")
        self.path = None
        self.url = url
        self.problem = problem


class DownloadError(FetchError, WeightsError):
    """Weights could not be downloaded, or what arrived failed verification; names the URL."""


class DatasetError(FileProblem):
    """A benchmark dataset that cannot be found, fetched, extracted or paired; names the path."""


class DatasetDownloadError(FetchError, DatasetError):
    """A dataset archive could not be downloaded, or failed its checksum; names the URL."""


class ArchiveError(DatasetError):
    """An archive that cannot be extracted safely: corrupt, or a member that would land outside
    the target folder (absolute, ``..``, a link pointing out) or is a device file."""


class NothingToDoError(LMFNError):
    """A batch with no image to work on: every input was missing or empty, or ``--gt`` holds no
    images. The inputs' own problems were reported one by one before it."""
