"""Building config dataclasses from plain dicts (JSON, checkpoints) with a clear error."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """``cls(**data)``, refusing fields ``cls`` does not have (``ConfigError`` names them)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} fields: {', '.join(unknown)}")
    return cls(**data)
