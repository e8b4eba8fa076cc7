"""``conscience train``: one option per ``TrainerConfig`` field, plus ``--config file.yaml``.

The options are generated from the dataclass (names, types, ``help``), so they never drift
apart. Precedence: defaults < YAML file < options given. ``train_app`` is a Typer whose
callback is the command, so it mounts as ``conscience train ...`` and runs standalone
(``python -m trainer ...``, ``accelerate launch -m trainer ...``).
"""

from __future__ import annotations

import inspect
import logging
import sys
import typing
from pathlib import Path
from typing import Any

import typer

from trainer.config import TrainerConfig, config_fields, load_config

train_app = typer.Typer(add_completion=False)


def _parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(TrainerConfig)
    config_option = typer.Option(None, "--config", help="YAML file of trainer options.")
    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=config_option)]
    for field in config_fields():
        option = typer.Option(None, help=field.metadata["help"], show_default=False)
        params.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=option,
                annotation=hints[field.name] | None,  # None: not given
            )
        )
    params[0] = params[0].replace(annotation=Path | None)
    return params


def train(**options: Any) -> None:
    """Train LoRA adapters from the pair queue (online DPO) into the adapter registry."""
    from trainer.loop import run

    config_file = options.pop("config", None)
    given = {k: v for k, v in options.items() if v is not None and v != []}
    try:
        config = load_config(config_file, **given)
    except (OSError, ValueError, TypeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if config.model is None:
        typer.echo("error: a base model directory is required (--model)", err=True)
        raise typer.Exit(2)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s", force=True
    )
    raise typer.Exit(run(config))


train.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in _parameters()}
train_app.callback(invoke_without_command=True)(train)
