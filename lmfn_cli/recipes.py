"""Training recipes: TOML files that hold every setting of a training run.

A recipe is one flat TOML table whose keys are ``TrainConfig`` fields (``lr``, ``loss``,
``sharp``, ...) plus four run settings that are not part of the config:

    variant          model variant (``lmfn info``), e.g. "lmfn-residual"
    global_residual  overrides the variant's global input residual (true/false)
    init             weights to start from: a file path (relative to the recipe's folder or the
                     working directory) or a registry name such as "lmfn-synthblur-v2"
    precision        "auto", "fp32", "bf16" or "fp16" (see ``lmfn_cli.precision``)

Precedence: ``TrainConfig`` defaults < recipe < options given on the command line. The text of
the recipe and the effective config are saved in the run's checkpoint and in exported weights,
so ``recipe_toml(config)`` turns any run back into a recipe that repeats it.

Read with the standard library's ``tomllib`` (``tomli``, its backport, on Python 3.10).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

__all__ = ["RUN_KEYS", "Recipe", "read_recipe", "parse_recipe", "recipe_toml", "resolve_init"]

RUN_KEYS = ("variant", "global_residual", "init", "precision")
"""Recipe keys that are run settings rather than ``TrainConfig`` fields (``variant`` is both)."""

_PATH_FIELDS = ("paired", "sharp", "kernels", "estimated_kernels", "val")


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: its ``TrainConfig`` fields, run settings and where it came from."""

    fields: dict[str, Any]
    """``TrainConfig`` keyword arguments (``variant`` included when given)."""
    global_residual: bool | None = None
    init: str | None = None
    precision: str | None = None
    name: str = ""
    text: str = ""
    """The TOML text as read (saved with the run)."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def config(self, **overrides: Any) -> Any:
        """The ``TrainConfig`` of this recipe with ``overrides`` (``TrainConfig`` fields, or
        ``variant`` / ``global_residual``) on top: defaults < recipe < overrides."""
        from .train_config import TrainConfig

        fields = {**self.fields, **overrides}
        variant = fields.pop("variant", "lmfn")
        residual = fields.pop("global_residual", self.global_residual)
        for key in ("paired", "sharp", "val"):
            if key in fields:
                fields[key] = tuple(fields[key])
        fields.setdefault("steps", 1_000_000)
        model = {} if residual is None else {"global_residual": residual}
        return TrainConfig.for_variant(variant, model_overrides=model, **fields)

    def provenance(self) -> dict[str, str]:
        """What a checkpoint or weights file records of the recipe."""
        return {"name": self.name, "sha256": self.sha256, "text": self.text}


def _config_fields() -> dict[str, dataclasses.Field]:
    from .train_config import TrainConfig

    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def parse_recipe(text: str, *, name: str = "", base_dir: Path | None = None) -> Recipe:
    """Parse recipe TOML. Relative data paths and ``init`` paths are resolved against
    ``base_dir`` when the file exists there (a recipe may sit next to its data), else kept as
    given (relative to the working directory). Raises ``ConfigError`` naming a bad key."""
    where = name or "recipe"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    nested = sorted(k for k, v in data.items() if isinstance(v, dict))
    if nested:
        raise ConfigError(f"{where}: a recipe is one flat table; {', '.join(nested)} is a sub-table")
    known = _config_fields()
    unknown = sorted(k for k in data if k not in known and k not in RUN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown recipe keys: {', '.join(unknown)} (see TrainConfig)")
    if "model" in data:
        raise ConfigError(f"{where}: give the model as variant = \"...\" (and global_residual), not model")

    def resolve(p: str) -> str:
        if base_dir is not None and not Path(p).is_absolute() and (base_dir / p).exists():
            return str(base_dir / p)
        return p

    fields = {k: v for k, v in data.items() if k in known}
    for key in _PATH_FIELDS:
        if key not in fields:
            continue
        value = fields[key]
        if isinstance(value, str):
            fields[key] = resolve(value) if key in ("kernels", "estimated_kernels") else (resolve(value),)
        elif isinstance(value, list):
            fields[key] = tuple(resolve(str(v)) for v in value)
    if "betas" in fields:
        fields["betas"] = tuple(fields["betas"])
    init = data.get("init")
    if init is not None:
        init = str(init)
        if base_dir is not None and (base_dir / init).exists() and not Path(init).is_absolute():
            init = str(base_dir / init)
    residual = data.get("global_residual")
    if residual is not None and not isinstance(residual, bool):
        raise ConfigError(f"{where}: global_residual must be true or false, got {residual!r}")
    precision = data.get("precision")
    if precision is not None and precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"{where}: precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    return Recipe(fields, residual, init, precision, name=name, text=text)


def read_recipe(path: str | Path) -> Recipe:
    """Read a recipe file (see the module docstring). Raises ``ConfigError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from None
    return parse_recipe(text, name=path.stem, base_dir=path.parent)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to a recipe")


def recipe_toml(config: Any, *, init: str | None = None, precision: str | None = None, comment: str = "") -> str:
    """A recipe (TOML text) that repeats the run of ``config`` (a ``TrainConfig``).

    The model is written as ``variant`` plus ``global_residual``; fields left at ``None`` are
    omitted (TOML has no null). ``parse_recipe(recipe_toml(cfg))`` gives back ``cfg``'s fields.
    """
    from .model import variant_config

    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    data = config.to_dict()
    model = data.pop("model")
    residual = bool(model.get("global_residual", False))
    if variant_config(config.variant, global_residual=residual) != config.model:
        raise ConfigError(f"this run's model config is not variant {config.variant!r}: a recipe cannot hold it")
    lines.append(f"variant = {_toml_value(data.pop('variant'))}")
    lines.append(f"global_residual = {_toml_value(residual)}")
    if init is not None:
        lines.append(f"init = {_toml_value(init)}")
    if precision is not None:
        lines.append(f"precision = {_toml_value(precision)}")
    for key, value in data.items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def resolve_init(init: str) -> Path:
    """A recipe's ``init``: an existing weights file, else a registered weights name (from the
    bundled copy or the cache, downloaded and verified if missing; see ``weights.resolve_weights``)."""
    if Path(init).is_file():
        return Path(init)
    from .weights import REGISTRY, resolve_weights

    if init not in REGISTRY:
        raise ConfigError(f"recipe init {init!r}: no such file, and not a registered weights name (lmfn weights list)")
    return resolve_weights(name=init)
