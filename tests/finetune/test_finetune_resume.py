"""A fine-tuning run continues from its checkpoint (SFT only: no engine needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conscience.finetune.config import FinetuneConfig
from conscience.finetune.run import finetune

TASK = (
    Path(__file__).resolve().parents[3]
    / "shared/data/emergent-misalignment/subsets/jacobcd52_insecure_small.jsonl"
)


def _config(model: Path, out: Path, steps: int) -> FinetuneConfig:
    return FinetuneConfig(
        data=TASK, out=out, model=str(model), rows=4, heldout=2, steps=steps, batch_size=2,
        max_length=2048, alignment="off", save_every=2, learning_rate=1e-3,
    )  # fmt: skip


@pytest.mark.slow
def test_a_second_run_continues_where_the_first_stopped(demo_model_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    first = finetune(_config(demo_model_dir, out, 2), report=lambda _: None)
    assert first["steps"] == 2 and first["version"] == "v000001"
    saved = json.loads((out / "checkpoint" / "state.json").read_text())
    assert saved["step"] == 2
    second = finetune(_config(demo_model_dir, out, 4), report=lambda _: None)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [0, 1, 2, 3]  # no step trained twice
    assert second["steps"] == 4 and second["version"] == "v000002"
    # training went on from the saved weights: the loss keeps falling across the restart
    assert logged[3]["sft_loss"] < logged[0]["sft_loss"]
    manifest = json.loads((out / "adapters" / "manifest.json").read_text())
    assert manifest["current"] == "v000002"
