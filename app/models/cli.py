"""``conscience models ...``: list the named offline models, prepare one.

Failures (unknown name, failed download, wrong checksum) print one line and exit with status 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.models.catalog import CATALOG, ModelSourceError, get_model
from app.models.prepare import is_prepared, model_dir, prepare_model

models_app = typer.Typer(help="Named offline models: list them, prepare one.", no_args_is_help=True)

CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar="CONSCIENCE_CACHE_DIR",
        help="Cache for prepared models. [default: ~/.cache/conscience]",
    ),
]


def _cache(cache_dir: Path | None) -> Path:
    from app.settings import default_cache_dir

    return cache_dir or default_cache_dir()


def _size(count: int) -> str:
    return f"{count / 1e6:,.0f} MB"


@models_app.command("list")
def list_models(cache_dir: CacheDir = None) -> None:
    """Name, aliases, GGUF size, licence, whether prepared, and where."""
    cache = _cache(cache_dir)
    table = Table("name", "aliases", "size", "licence", "prepared", "path")
    for entry in CATALOG:
        prepared = is_prepared(entry, cache)
        table.add_row(
            entry.name,
            ", ".join(entry.aliases),
            _size(entry.size),
            entry.licence,
            "yes" if prepared else "no",
            str(model_dir(entry, cache)),
        )
    Console(width=200).print(table)


@models_app.command()
def prepare(
    name: Annotated[str, typer.Argument(help="A named model (see 'conscience models list').")],
    cache_dir: CacheDir = None,
) -> None:
    """Fetch, verify and convert a named model once; print its directory."""
    console = Console(stderr=True)
    try:
        entry = get_model(name)
        path = prepare_model(entry, _cache(cache_dir), lambda m: console.print(m, soft_wrap=True))
    except ModelSourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(path))
