"""The end of a run: DPO margins on the conscience's pairs, the adapter into the registry.

Margins are the trainer's own measurement (``trainer.margins.measure``): log p(chosen) -
log p(rejected) on every pair the conscience produced, under the frozen base (adapter
disabled) and under the fine-tuned adapter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.adapter_registry import AdapterRegistry, base_model_identity
from trainer.margins import measure


def margins(run: Any) -> dict[str, float | int | None]:
    """Pool margins under the base and under the adapter."""
    kw = {"pad_id": run.pad_id, "batch_size": 2}
    after = measure(run.model, run.pool, **kw)
    with run.model.disable_adapter():
        before = measure(run.model, run.pool, **kw)
    return {
        "pairs": after.n,
        "margin_base": before.margin,
        "margin_adapter": after.margin,
        "accuracy_base": before.accuracy,
        "accuracy_adapter": after.accuracy,
    }


def _flat(summary: dict[str, Any]) -> dict[str, float | int | str | None]:
    return {k: v for k, v in summary.items() if isinstance(v, (float, int, str)) or v is None}


def publish(run: Any, summary: dict[str, Any]) -> str:
    """Write the adapter as a new registry version (current); return the version name."""
    registry = AdapterRegistry(run.config.registry)
    registry.root.mkdir(parents=True, exist_ok=True)
    registry.clean_staging()
    version = registry.next_version()
    staging = registry.staging_dir(version)
    run.model.save_pretrained(staging)
    base = base_model_identity(run.model_dir)
    registry.publish(staging, version, None, base, [], _flat(summary))
    return version


def summarize(run: Any) -> dict[str, Any]:
    """The run's figures: config, rounds, margins, last losses."""
    lines = (run.config.out / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line) for line in lines if '"step"' in line and '"round"' not in line]
    last = steps[-1] if steps else {}
    summary: dict[str, Any] = {
        "alignment": run.config.alignment,
        "steps": run.state.step,
        "train_rows": len(run.examples),
        "skipped_long": run.skipped_long,
        "last_sft_loss": last.get("sft_loss"),
        "first_sft_loss": steps[0].get("sft_loss") if steps else None,
        "rounds": len(run.state.rounds),
        "flag_rate_first_round": _rate(run.state.rounds[:1]),
        "flag_rate_last_round": _rate(run.state.rounds[-1:]),
    }
    if run.pool:
        summary.update({f"dpo_{k}": v for k, v in margins(run).items()})
    return summary


def _rate(rounds: list[dict[str, Any]]) -> float | None:
    return rounds[0]["flag_rate"] if rounds else None


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
