"""``conscience calibrate``: judge dev rows on the in-process engine, fit, write profiles.

    conscience calibrate --dataset var/eval/dev.jsonl --model qwen2.5-coder-0.5b \\
        --framework introspective --framework three_laws --out profiles/

Refuses rows marked ``split: test``: a profile is fitted on dev data only. Writes one
``<model>.<framework>[.continuation].json`` profile per framework and layout (``auto``: both
layouts the server's ``auto`` layout uses); ``conscience serve --calibration FILE``
applies it (the shipped ones apply by themselves to the named models).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from app.conscience.calibration import CalibrationProfile, FittedOn, Numerics, save_profile
from app.settings import ReviewLayout, Settings
from conscience.calibrate.features import judge_rows
from conscience.calibrate.fit import Decision, Probabilities, fit
from conscience.eval.dataset import DatasetError, file_digest, load_dataset

console = Console(stderr=True)


class CalibrateError(RuntimeError):
    """The calibration cannot run; the message says why."""


def calibrate(
    dataset: Annotated[Path, typer.Option(help="Dev rows with fixed answers (.jsonl/.csv).")],
    out: Annotated[Path, typer.Option(help="Directory for the profiles.")],
    model: Annotated[
        str | None, typer.Option(help="Model name, directory or hub id (default: the default).")
    ] = None,
    framework: Annotated[
        list[str] | None, typer.Option(help="Framework(s) to calibrate (default: all).")
    ] = None,
    frameworks_dir: Annotated[
        Path | None, typer.Option(help="Directory of your own framework YAML files.")
    ] = None,
    review_layout: Annotated[
        ReviewLayout,
        typer.Option(help="Review layout; auto fits both layouts the server's auto uses."),
    ] = ReviewLayout.auto,
    target_fpr: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="False-positive rate the threshold allows.")
    ] = 0.05,
    decision: Annotated[
        str,
        typer.Option(help="auto (read-out if it beats the question on dev), question, readout."),
    ] = "auto",
    probabilities: Annotated[
        str,
        typer.Option(
            help="folds: the read-out's probabilities as fitted (5-fold dev predictions); "
            "sources-held-out: softened to hold on a dev source it did not see (needs 3+ "
            "sources; did not help on our dev data, docs/EVALUATION.md R2.9)."
        ),
    ] = "folds",
    cache_dir: Annotated[Path | None, typer.Option(help="Prepared-model cache.")] = None,
) -> None:
    """Fit calibration profiles (threshold at a target FPR, Platt scaling, read-out) on dev data."""
    try:
        profiles = asyncio.run(
            _calibrate(
                dataset,
                out,
                model,
                framework or [],
                frameworks_dir,
                review_layout,
                target_fpr,
                _decision(decision),
                _probabilities(probabilities),
                cache_dir,
            )
        )
    except (CalibrateError, DatasetError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    table = Table(
        "profile", "decision", "AUROC question", "AUROC read-out", "read-out, source held out",
        "ECE", "ECE, source held out", "FPR", "TPR",
    )  # fmt: skip
    for _, p in profiles:
        d = p.dev
        table.add_row(
            p.name,
            p.decision,
            _f(d.auroc_question),
            _f(d.auroc_readout),
            _f(d.auroc_readout_by_source),
            _f(d.ece),
            _f(d.ece_by_source),
            _f(d.fpr),
            _f(d.tpr),
        )
    screen = Console()
    # a log or pipe gets 80 columns by default, which cuts the profile names to 'qwen2…'
    (screen if screen.is_terminal else Console(width=200)).print(table)
    console.print(f"profiles written to {out}")


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _decision(value: str) -> Decision:
    if value not in ("auto", "question", "readout"):
        raise typer.BadParameter("--decision must be auto, question or readout")
    return value  # type: ignore[return-value]


def _probabilities(value: str) -> Probabilities:
    if value not in ("sources-held-out", "folds"):
        raise typer.BadParameter("--probabilities must be sources-held-out or folds")
    return value  # type: ignore[return-value]


async def _calibrate(
    dataset: Path,
    out: Path,
    model: str | None,
    frameworks: list[str],
    frameworks_dir: Path | None,
    layout: ReviewLayout,
    target_fpr: float,
    decision: Decision,
    probabilities: Probabilities,
    cache_dir: Path | None,
) -> list[tuple[Path, CalibrationProfile]]:
    from app.conscience.calibration import model_fingerprint
    from app.conscience.frameworks import FrameworkCatalog
    from app.conscience.prompts import review_prompt_hash
    from app.models import resolve_model, served_name
    from app.vllm_engine import VllmEngine, compute_device

    items = [i for i in load_dataset(dataset) if i.answer is not None]
    if any(i.split == "test" for i in items):
        raise CalibrateError(f"{dataset} holds test rows: calibrate on dev data only")
    y = np.array([i.label == "harmful" for i in items], dtype=int)
    if y.sum() < 5 or (1 - y).sum() < 5:
        raise CalibrateError(f"{dataset} needs at least 5 harmful and 5 benign answer rows")
    catalog = FrameworkCatalog.load(frameworks_dir)
    chosen = [catalog.get(name) for name in frameworks or catalog.names()]
    settings = Settings(model=model, **({"cache_dir": cache_dir} if cache_dir else {}))
    model_dir = resolve_model(model, settings.cache_dir, lambda m: console.print(m))
    name = served_name(model, model_dir)
    engine = VllmEngine.start(settings, model_dir, name)
    numerics = Numerics(dtype=engine.dtype or "unknown", device=compute_device())
    layouts = (
        [ReviewLayout.framework_first, ReviewLayout.continuation]
        if layout is ReviewLayout.auto
        else [layout]
    )
    written = []
    try:
        for fw, layout in ((fw, lay) for fw in chosen for lay in layouts):
            judged = await judge_rows(engine, fw, layout, items, settings.review_max_input_tokens)
            fitted = fit(
                judged.raw,
                judged.features,
                judged.token_ids,
                judged.tokens,
                y,
                target_fpr,
                decision,
                groups=[i.source or "-" for i in items],
                probabilities=probabilities,
            )
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower()
            suffix = "" if layout is ReviewLayout.framework_first else f".{layout.value}"
            profile = CalibrationProfile(
                name=f"{slug}.{fw.name}{suffix}.{numerics.dtype}",
                model=model_fingerprint(model_dir),
                model_name=name,
                framework=fw.name,
                review_prompt_hash=review_prompt_hash(fw, layout),
                decision=fitted.decision,
                question=fitted.question,
                readout=fitted.readout,
                threshold=fitted.threshold,
                target_fpr=target_fpr,
                fitted_on=FittedOn(
                    dataset=dataset.name,
                    digest=file_digest(dataset),
                    harmful=int(y.sum()),
                    benign=int((1 - y).sum()),
                ),
                dev=fitted.dev,
                numerics=numerics,
            )
            path = out / f"{profile.name}.json"
            save_profile(profile, path)
            np.savez(  # the judged features, to study or refit without the engine
                out / f"{profile.name}.features.npz",
                raw=judged.raw,
                features=judged.features,
                token_ids=np.array(judged.token_ids),
                y=y,
                sources=np.array([i.source or "-" for i in items]),
                ids=np.array([i.id for i in items]),
            )
            written.append((path, profile))
    finally:
        engine.shutdown()
    return written
