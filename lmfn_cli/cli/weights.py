"""lmfn download-weights and lmfn weights list/path/verify: named weights, the cache, downloads."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..errors import UnknownWeightsError, WeightsError
from . import main
from .options import EXIT_FAILED, EXIT_NO_WEIGHTS, _download_progress, fail

def _entries(names: tuple[str, ...]) -> list:
    """Registry entries for ``names`` (all of them when empty); an unknown name is a usage error."""
    from ..weights import REGISTRY, get_entry

    try:
        return [get_entry(n) for n in names] if names else list(REGISTRY.values())
    except UnknownWeightsError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None


@main.command("download-weights")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--force", is_flag=True, help="Download again even if the cache holds a verified copy.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or notes (errors still show).")
def download_weights(names: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Download named weights into the cache (no NAME: the default weights).

    Each file is fetched from LMFN_WEIGHTS_URL (default: the project's release assets) into
    NAME.part, resumed after a broken connection, checked against the registry's size and
    SHA-256, and only then renamed into the cache (LMFN_CACHE_DIR, default: the user cache
    folder). A file already cached and verified is not fetched again unless --force. The path of
    each file goes to stdout. Exit code 3 when a download fails or LMFN_OFFLINE=1 forbids it.

    \b
    Example:
      lmfn download-weights
      LMFN_WEIGHTS_URL=https://mirror.example.org/lmfn/ lmfn download-weights lmfn-synthblur-v0 --force
    """
    from ..weights import DEFAULT_NAME, cached_path, check_file, fetch

    for entry in _entries(names or (DEFAULT_NAME,)):
        path = cached_path(entry)
        if not force and path.is_file():
            try:
                check_file(entry, path)
            except WeightsError:
                pass  # fetch() says so and downloads it again
            else:
                if not quiet:
                    click.echo(f"lmfn: {entry.name} is in the cache already (SHA-256 verified)", err=True)
                click.echo(str(path))
                continue
        try:
            with _download_progress(quiet) as (on_progress, describe):
                describe(entry.name)
                path = fetch(entry.name, force=force, on_progress=on_progress)
        except WeightsError as exc:
            raise fail(str(exc), EXIT_NO_WEIGHTS) from None
        if not quiet:
            click.echo(f"lmfn: downloaded {entry.name} ({entry.size:,} bytes, SHA-256 verified)", err=True)
        click.echo(str(path))


@main.group("weights")
def weights_group() -> None:
    """Named weights: list them, find their files, verify them.

    \b
    Example:
      lmfn weights list
      lmfn weights path lmfn-synthblur-v0
      lmfn weights verify
    """


@weights_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per weights instead of a table.")
def weights_list(as_json: bool) -> None:
    """List the named weights: size, whether cached (where), default, bundled.

    \b
    Example:
      lmfn weights list --json | jq -r 'select(.cached == null) | .name'
    """
    from ..weights import DEFAULT_NAME, REGISTRY, bundled_path, cached_path, url_for

    rows = []
    for entry in REGISTRY.values():
        cached, bundled = cached_path(entry), bundled_path(entry)
        rows.append({
            "name": entry.name, "size": entry.size, "sha256": entry.sha256,
            "cached": str(cached) if cached.is_file() else None,
            "default": entry.name == DEFAULT_NAME, "bundled": str(bundled) if bundled else None,
            "url": url_for(entry), "licence": entry.licence, "training_data": entry.training_data,
            "description": entry.description,
        })
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title="LMFN weights")
    for column in ("name", "size", "cached", "default", "bundled", "what"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['size'] / 1e6:.1f} MB", r["cached"] or "no", "yes" if r["default"] else "",
                      "yes" if r["bundled"] else "", r["description"])
    Console().print(table)


@weights_group.command("path")
@click.argument("name", required=False, metavar="[NAME]")
def weights_path(name: str | None) -> None:
    """Print the file of weights NAME (default: the default weights): cached, else bundled.

    Exit code 3 when there is neither (lmfn download-weights NAME fetches it).

    \b
    Example:
      lmfn weights path lmfn-synthblur-v0
    """
    from ..weights import DEFAULT_NAME, bundled_path, cached_path

    entry = _entries((name or DEFAULT_NAME,))[0]
    cached, bundled = cached_path(entry), bundled_path(entry)
    if cached.is_file():
        click.echo(str(cached))
    elif bundled is not None:
        click.echo(str(bundled))
    else:
        raise fail(f"{entry.name} is not in the cache ({cached}) nor bundled; "
                   f"run: lmfn download-weights {entry.name}", EXIT_NO_WEIGHTS)


@weights_group.command("verify")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def weights_verify(names: tuple[str, ...]) -> None:
    """Recompute the SHA-256 of cached and bundled weights and compare with the registry.

    One line per file on stdout: "ok NAME PATH" or "bad NAME PATH: problem". Exit code 1 if
    any file is bad, 3 if a NAME given is neither cached nor bundled.

    \b
    Example:
      lmfn weights verify lmfn-synthblur-v0
    """
    from ..weights import bundled_path, cached_path, check_file

    bad = missing = False
    checked = 0
    for entry in _entries(names):
        found = [p for p in (cached_path(entry), bundled_path(entry)) if p is not None and p.is_file()]
        checked += len(found)
        for path in found:
            try:
                check_file(entry, path)
            except WeightsError as exc:
                bad = True
                click.echo(f"bad {entry.name} {path}: {exc.problem}")
            else:
                click.echo(f"ok {entry.name} {path}")
        if not found and names:
            missing = True
            click.echo(f"lmfn: error: {entry.name} is neither cached nor bundled "
                       f"(run: lmfn download-weights {entry.name})", err=True)
    if not checked:
        click.echo("lmfn: no cached or bundled weights to verify", err=True)
    if bad:
        raise click.exceptions.Exit(EXIT_FAILED)
    if missing:
        raise click.exceptions.Exit(EXIT_NO_WEIGHTS)
