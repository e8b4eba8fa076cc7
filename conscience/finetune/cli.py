"""``conscience finetune``: one option per ``FinetuneConfig`` field, plus ``--config file.yaml``.

Options are generated from the dataclass (names, types, help) as ``conscience train`` does.
Precedence: field defaults < YAML file < options given. Errors print one line.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from conscience.finetune.config import FinetuneConfig, config_fields

console = Console(stderr=True)
_REQUIRED = {"data", "out"}


def _parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(FinetuneConfig)
    config_option = typer.Option(None, "--config", help="YAML file of finetune options.")
    params = [
        inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=config_option, annotation=Path | None
        )
    ]
    for field in config_fields():
        hint = hints[field.name]
        if typing.get_origin(hint) is typing.Literal:
            hint = str
        help_text = field.metadata["help"]
        if field.default is not dataclasses.MISSING and field.default is not None:
            help_text += f" [default: {field.default}]"
        option = typer.Option(None, help=help_text, show_default=False)
        params.append(
            inspect.Parameter(
                field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint | None
            )
        )
    return params


def load_config(path: Path | None, **given: Any) -> FinetuneConfig:
    """Defaults, then the YAML file, then the options given."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of option names to values")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in given.items() if v is not None and v != []})
    unknown = sorted(set(values) - {f.name for f in config_fields()})
    if unknown:
        raise ValueError(f"unknown finetune options: {', '.join(unknown)}")
    missing = sorted(_REQUIRED - set(values))
    if missing:
        raise ValueError(f"missing --{', --'.join(missing)}")
    return FinetuneConfig(**values)


def finetune(**options: Any) -> None:
    """Fine-tune a LoRA adapter on a task (SFT), optionally with the conscience's DPO term."""
    from app.models import ModelSourceError
    from conscience.finetune.chats import ChatDataError
    from conscience.finetune.run import finetune as run

    try:
        config = load_config(options.pop("config", None), **options)
        summary = run(config, report=lambda m: console.print(m, soft_wrap=True))
    except (OSError, ValueError, TypeError, ChatDataError, ModelSourceError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(summary, indent=2))


finetune.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
finetune.__annotations__ = {p.name: p.annotation for p in _parameters()}
