"""ARCHITECTURE.md's layer table holds: every lmfn_cli module is in one layer, imports only its
own or lower layers (lazy imports included), and only the CLI layer imports click or rich."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lmfn_cli"
UI_LIBRARIES = ("click", "rich")


def read_layers() -> dict[str, int]:
    """{module pattern: layer} from the table of ARCHITECTURE.md (``synth.*`` matches submodules)."""
    layers = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|[^|]*\|(.*)\|\s*$", line)
        if m:
            for name in re.findall(r"`([^`]+)`", m.group(2)):
                assert name not in layers, f"{name} is in two rows of ARCHITECTURE.md"
                layers[name] = int(m.group(1))
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "lmfn_cli"


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    if module in layers:
        return layers[module]
    for pattern, layer in layers.items():
        if pattern.endswith(".*") and module.startswith(pattern[:-1]):
            return layer
    head = module.rsplit(".", 1)[0] if "." in module else None
    return layers.get(head) if head else None


def is_module(name: str) -> bool:
    """Whether ``name`` (relative to lmfn_cli) is a module or package of lmfn_cli."""
    where = PACKAGE / Path(*name.split("."))
    return where.with_suffix(".py").exists() or (where / "__init__.py").exists()


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """What ``source`` (the text of lmfn_cli module ``module``) imports: lmfn_cli modules by their
    relative names (``lmfn_cli`` for the root, ``lmfn_cli:NAME`` for a name of it), and ``click``
    or ``rich``. Standard-library and other third-party imports are left out."""
    package = module if is_package else (module.rsplit(".", 1)[0] if "." in module else "")
    package = "" if package == "lmfn_cli" else package
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)]
            if node.module:
                out.add(".".join(base + [node.module]))
                continue
            for alias in node.names:  # from . import x: a module, or a name of the package
                name = ".".join(base + [alias.name])
                out.add(name if is_module(name) else (".".join(base) or "lmfn_cli") + ":" + alias.name)
            continue
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            top = name.split(".")[0]
            if top in UI_LIBRARIES:
                out.add(top)
            elif top == "lmfn_cli":
                out.add(name.removeprefix("lmfn_cli.") if name != "lmfn_cli" else "lmfn_cli")
    return out


def library_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "examples" not in p.relative_to(PACKAGE).parts
                  and "bundled" not in p.relative_to(PACKAGE).parts)


def test_every_module_is_in_one_layer():
    layers = read_layers()
    missing = [module_name(p) for p in library_modules() if layer_of(module_name(p), layers) is None]
    assert not missing, f"add these modules to the layer table of ARCHITECTURE.md: {missing}"
    known = {module_name(p) for p in library_modules()}
    stale = [n for n in layers if not n.endswith(".*") and n not in known]
    assert not stale, f"ARCHITECTURE.md names modules that do not exist: {stale}"


def test_imports_go_to_the_same_or_a_lower_layer():
    layers = read_layers()
    cli_layer = layers["cli"]
    bad = []
    for path in library_modules():
        me = module_name(path)
        mine = layer_of(me, layers)
        for dep in sorted(imports_of(path.read_text(), me, path.name == "__init__.py")):
            if dep in UI_LIBRARIES:
                if mine != cli_layer:
                    bad.append(f"{me} imports {dep}: only the CLI layer may")
                continue
            if dep.endswith(":__version__"):
                continue
            dep_module = dep.split(":")[0]
            theirs = layer_of(dep_module, layers)
            assert theirs is not None, f"{me} imports {dep_module}, which is in no layer"
            if theirs > mine:
                bad.append(f"{me} (layer {mine}) imports {dep_module} (layer {theirs})")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation():
    # the rule can fail: lazy imports of click and of the CLI inside a library function are found
    source = "from .errors import LMFNError\n\ndef f():\n    import click\n    from .cli import main\n" \
             "    from lmfn_cli.train import train\n    from . import __version__\n"
    assert imports_of(source, "evaluation") == {"errors", "click", "cli", "train", "lmfn_cli:__version__"}
    assert imports_of("from .color import x\nfrom ..images import y\n", "synth.pairs") == {"synth.color", "images"}
    assert imports_of("from .pairs import x\n", "synth", is_package=True) == {"synth.pairs"}


def test_every_package_is_in_the_wheel():
    # setuptools installs only the packages pyproject.toml lists: a new sub-package left out
    # works in an editable install and is missing from the wheel
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")
             if "bundled" not in p.parts}
    assert found == listed
