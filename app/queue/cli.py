"""``conscience queue ...``: inspect and maintain the pair queue.

Every command takes ``--queue URL`` (env ``CONSCIENCE_QUEUE``). Failures print one line and
exit with status 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from app.queue import PairQueue, QueueError, open_queue
from app.queue.imports import IMPORTED_FRAMEWORK, read_pairs

DEFAULT_QUEUE = "sqlite:///var/conscience/pairs.db"

queue_app = typer.Typer(help="Inspect and maintain the flagged-pair queue.", no_args_is_help=True)

QueueUrl = Annotated[
    str,
    typer.Option("--queue", envvar="CONSCIENCE_QUEUE", help="sqlite:///PATH or redis://HOST..."),
]
T = TypeVar("T")


@contextmanager
def _queue(url: str) -> Iterator[PairQueue]:
    """Open the queue; a ``QueueError`` anywhere inside becomes one line and exit code 1."""
    try:
        with open_queue(url) as queue:
            yield queue
    except QueueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _run(url: str, action: Callable[[PairQueue], T]) -> T:
    with _queue(url) as queue:
        return action(queue)


@queue_app.command()
def stats(
    queue: QueueUrl = DEFAULT_QUEUE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Depth, leases, acks, lag and unacked records per framework."""
    snapshot = _run(queue, lambda q: q.stats())
    if as_json:
        typer.echo(snapshot.model_dump_json())
        return
    table = Table("metric", "value")
    table.add_row("ready (depth)", str(snapshot.depth))
    table.add_row("leased", str(snapshot.leased))
    table.add_row("acked", str(snapshot.acked))
    age = snapshot.oldest_age_s
    table.add_row("oldest unacked age", "-" if age is None else f"{age:.1f} s")
    for framework, count in snapshot.by_framework.items():
        table.add_row(f"unacked: {framework}", str(count))
    Console().print(table)


@queue_app.command()
def peek(
    n: Annotated[int, typer.Argument(min=1, help="How many records.")] = 10,
    queue: QueueUrl = DEFAULT_QUEUE,
) -> None:
    """Show the next N ready records without leasing them."""
    records = _run(queue, lambda q: q.peek(n))
    table = Table(
        "id",
        "framework",
        "verdict",
        "score",
        "prompt",
    )
    for r in records:
        score = "-" if r.score is None else f"{r.score:.3f}"
        prompt = r.prompt[-1].content.replace("\n", " ")
        table.add_row(r.id, r.framework, r.verdict, score, prompt[:60])
    Console().print(table)


@queue_app.command("export")
def export_(
    file: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    include_acked: Annotated[bool, typer.Option("--all", help="Include acked records.")] = False,
    queue: QueueUrl = DEFAULT_QUEUE,
) -> None:
    """Write records as TRL preference JSONL (unacked only unless --all)."""
    count = _run(queue, lambda q: q.export(file, include_acked=include_acked))
    typer.echo(f"exported {count} records to {file}")


@queue_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSONL file to read.")],
    framework: Annotated[
        str,
        typer.Option(help="Framework plain TRL rows (prompt/chosen/rejected) are filed under."),
    ] = IMPORTED_FRAMEWORK,
    queue: QueueUrl = DEFAULT_QUEUE,
) -> None:
    """Produce every pair of a JSONL file: records from `export`, or plain TRL preference rows.

    Plain rows ({prompt, chosen, rejected} as chat messages or strings) get source import,
    verdict unknown and --framework. All lines are validated first (a bad line names its
    number and nothing is imported); ids already queued are skipped.
    """

    def produce(q: PairQueue) -> int:
        records = read_pairs(file, framework)
        q.produce(records)
        return len(records)

    count = _run(queue, produce)
    typer.echo(f"imported {count} records from {file}")


@queue_app.command()
def requeue(queue: QueueUrl = DEFAULT_QUEUE) -> None:
    """Release every current lease so those records are ready now."""
    count = _run(queue, lambda q: q.requeue())
    typer.echo(f"released {count} leases")


@queue_app.command()
def prune(
    max_acked: Annotated[
        int | None, typer.Option(min=0, help="Keep at most this many acked records.")
    ] = None,
    max_age_s: Annotated[
        float | None, typer.Option(min=0, help="Delete records acked longer ago than this.")
    ] = None,
    queue: QueueUrl = DEFAULT_QUEUE,
) -> None:
    """Delete acked records by count and/or age (unacked records are never pruned)."""
    if max_acked is None and max_age_s is None:
        typer.echo("error: give --max-acked and/or --max-age-s", err=True)
        raise typer.Exit(1)
    count = _run(queue, lambda q: q.prune(max_acked=max_acked, max_age_s=max_age_s))
    typer.echo(f"removed {count} acked records")
