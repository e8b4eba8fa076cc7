"""The ``conscience`` command: ``serve``, ``demo-model``, ``queue ...``, ``train``.

``serve`` has one option per ``Settings`` field, generated from the settings class so the
two never drift apart; an option left out falls back to ``CONSCIENCE_*`` env, then defaults.
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from pathlib import Path

import click
import typer
from rich.console import Console

tools = typer.Typer(add_completion=False)
console = Console(stderr=True)


@tools.command("demo-model")
def demo_model(
    out_dir: Path = typer.Argument(..., help="Directory to write the tiny model to."),
) -> None:
    """Write the tiny random-weight model the tests use (then: conscience serve --model DIR)."""
    from app.demo_model import write_demo_model

    console.print(f"Wrote {write_demo_model(out_dir)}")


def _click_type(annotation: object) -> tuple[object, bool]:
    """(click type, multiple) for a settings annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _click_type(args[0])
    if origin is list:
        inner, _ = _click_type(args[0])
        return inner, True
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return click.Choice([m.value for m in annotation]), False
    return {int: click.INT, float: click.FLOAT, Path: click.Path(path_type=Path)}.get(
        annotation,
        click.STRING,  # type: ignore[arg-type]
    ), False


def _settings_options() -> list[click.Option]:
    from app.settings import Settings

    options = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        common = {
            "default": None,
            "help": f"{field.description or ''} [env: CONSCIENCE_{name.upper()}]",
            "show_default": _shown(default),
        }
        flag = name.replace("_", "-")
        if field.annotation is bool:
            options.append(click.Option([f"--{flag}/--no-{flag}", name], **common))
            continue
        kind, multiple = _click_type(field.annotation)
        options.append(click.Option([f"--{flag}", name], type=kind, multiple=multiple, **common))
    return options


def _shown(default: object) -> str:
    if isinstance(default, list):
        return ", ".join(str(getattr(d, "value", d)) for d in default) or "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(getattr(default, "value", default))


def _serve(**given: object) -> None:
    """Serve the OpenAI-compatible API with the conscience in front of an in-process vLLM."""
    import logging

    import uvicorn

    from app.model_source import ModelSourceError, resolve_model
    from app.server import create_app
    from app.settings import Settings

    overrides = {k: v for k, v in given.items() if v is not None and v != ()}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        model_dir = resolve_model(settings.model, settings.cache_dir, progress=console.print)
    except ModelSourceError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        sys.exit(1)
    name = settings.served_model_name or (
        settings.model if settings.model and not Path(settings.model).is_dir() else model_dir.name
    )
    settings = settings.model_copy(update={"model": str(model_dir), "served_model_name": name})
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )


def build_cli() -> click.Group:
    """The ``conscience`` command group: serve, demo-model, queue, train."""
    from app.queue.cli import queue_app
    from conscience.loop import loop_app
    from trainer.cli import train_app

    root = click.Group(
        "conscience", help="Conscience: inference-time conscience middleware for LLMs."
    )
    root.add_command(
        click.Command("serve", callback=_serve, params=_settings_options(), help=_serve.__doc__)
    )
    root.add_command(typer.main.get_command(tools), "demo-model")
    root.add_command(typer.main.get_command(queue_app), "queue")
    root.add_command(typer.main.get_command(train_app), "train")
    root.add_command(typer.main.get_command(loop_app), "loop")
    return root


def main() -> None:
    """Entry point of the ``conscience`` script."""
    build_cli()()


if __name__ == "__main__":
    main()
