"""The ``conscience`` command: serve, models, demo-model, queue, train, loop, eval, calibrate,
bench.

``serve`` has one option per ``Settings`` field, generated from the settings class so the
two never drift apart; an option left out falls back to ``CONSCIENCE_*`` env, then defaults.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console(stderr=True)


def demo_model(
    out_dir: Path = typer.Argument(..., help="Directory to write the tiny model to."),
) -> None:
    """Write the tiny random-weight model the tests use (then: conscience serve --model DIR)."""
    from app.demo_model import write_demo_model

    console.print(f"Wrote {write_demo_model(out_dir)}")


def _shown(default: object) -> str:
    if isinstance(default, list):
        return ", ".join(str(getattr(d, "value", d)) for d in default) or "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(getattr(default, "value", default))


def _serve_parameters() -> list[inspect.Parameter]:
    from app.settings import Settings

    params = []
    for name, field in Settings.model_fields.items():
        flag = name.replace("_", "-")
        decls = [f"--{flag}/--no-{flag}"] if field.annotation is bool else [f"--{flag}"]
        option = typer.Option(
            None,
            *decls,
            help=f"{field.description or ''} (env: CONSCIENCE_{name.upper()})",
            show_default=_shown(field.get_default(call_default_factory=True)),
        )
        annotation = (
            field.annotation if "None" in str(field.annotation) else field.annotation | None
        )
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
            )
        )
    return params


def serve(**given: Any) -> None:
    """Serve the OpenAI-compatible API with the conscience in front of an in-process vLLM."""
    import logging

    from pydantic import ValidationError

    from app.allocator import (
        INSTALL_HINT,
        Allocator,
        AllocatorError,
        preload_env,
        preloaded,
        reexec,
    )
    from app.settings import Settings

    overrides = {k: v for k, v in given.items() if v is not None and v != []}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        console.print(f"[red]error:[/red] invalid settings: {problems}", soft_wrap=True)
        sys.exit(2)
    try:
        preload = preload_env(settings.allocator, os.environ)
    except AllocatorError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        sys.exit(2)
    if preload is not None:
        reexec(preload)  # before the heavy imports below: they run once, under tcmalloc
    import uvicorn

    from app.models import ModelSourceError, resolve_model, served_name
    from app.server import create_app

    if settings.allocator is Allocator.auto and not preloaded(os.environ):
        console.print(
            f"note: serving without tcmalloc ({INSTALL_HINT}); the engine's memory may grow "
            "under long load",
            soft_wrap=True,
        )
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        model_dir = resolve_model(
            settings.model, settings.cache_dir, lambda m: console.print(m, soft_wrap=True)
        )
    except ModelSourceError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        sys.exit(1)
    name = settings.served_model_name or served_name(settings.model, model_dir)
    settings = settings.model_copy(update={"model": str(model_dir), "served_model_name": name})
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )


serve.__signature__ = inspect.Signature(_serve_parameters())  # type: ignore[attr-defined]


def build_cli() -> typer.Typer:
    """The ``conscience`` command with every subcommand mounted."""
    from app.models.cli import models_app
    from app.queue.cli import queue_app
    from conscience.bench.cli import bench_app
    from conscience.calibrate.cli import calibrate
    from conscience.eval.cli import eval_app
    from conscience.finetune.cli import finetune
    from conscience.loop import loop
    from trainer.cli import train_app

    root = typer.Typer(
        help="Conscience: inference-time conscience middleware for LLMs.",
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    root.command("serve")(serve)
    root.add_typer(models_app, name="models")
    root.command("demo-model")(demo_model)
    root.add_typer(queue_app, name="queue")
    root.add_typer(train_app, name="train")
    root.command("loop")(loop)
    root.command("finetune")(finetune)
    root.add_typer(eval_app, name="eval")
    root.command("calibrate")(calibrate)
    root.add_typer(bench_app, name="bench")
    return root


def main() -> None:
    """Entry point of the ``conscience`` script."""
    build_cli()()


if __name__ == "__main__":
    main()
