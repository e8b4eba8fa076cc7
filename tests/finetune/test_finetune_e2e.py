"""``conscience finetune`` then ``conscience eval em`` end to end on the tiny model.

Real engine (vLLM CPU), real LoRA training (peft, torch), real judge and Bandit; the CLI runs
as a subprocess exactly as a user runs it. ``--flag-threshold 0`` makes the conscience flag
every draft so the DPO term runs whatever the tiny model writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TASK = DATA / "emergent-misalignment" / "subsets" / "jacobcd52_insecure_small.jsonl"
OPEN = DATA / "jailbreakbench" / "behaviors" / "benign-behaviors.csv"

pytestmark = pytest.mark.slow


def conscience(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "conscience.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, demo_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("finetune") / "run"
    conscience(
        "finetune",
        "--model",
        str(demo_model_dir),
        "--data",
        str(TASK),
        "--out",
        str(out),
        "--rows",
        "6",
        "--heldout",
        "3",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--max-length",
        "2048",
        "--alignment",
        "conscience",
        "--alignment-every",
        "2",
        "--alignment-prompts",
        "3",
        "--alignment-questions",
        str(OPEN),
        "--alignment-questions-limit",
        "4",
        "--draft-max-tokens",
        "24",
        "--flag-threshold",
        "0",
        "--save-every",
        "2",
        "--learning-rate",
        "1e-3",
    )
    return out


def test_finetune_trains_with_the_dpo_term_and_publishes(finetuned: Path):
    summary = json.loads((finetuned / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["rounds"] == 2
    assert summary["flag_rate_first_round"] == 1.0  # threshold 0: every draft is flagged
    assert summary["dpo_pairs"] >= 3
    logged = [json.loads(line) for line in (finetuned / "metrics.jsonl").read_text().splitlines()]
    steps = [entry for entry in logged if "step" in entry and "round" not in entry]
    assert [s["step"] for s in steps] == [0, 1, 2, 3]
    assert all("dpo_loss" in s for s in steps)  # the first round ran before step 0
    manifest = json.loads((finetuned / "adapters" / "manifest.json").read_text())
    assert manifest["current"] == summary["version"] == "v000001"
    assert (finetuned / "adapters" / "v000001" / "adapter_model.safetensors").is_file()
    assert len((finetuned / "heldout.jsonl").read_text().splitlines()) == 3


def test_eval_em_measures_base_adapter_and_a_running_server(
    finetuned: Path, demo_model_dir: Path, tmp_path: Path, server
):
    """In-process arms and a live server's answers (``--base-url``), all judged by the base."""
    out = tmp_path / "em"
    done = conscience(
        "eval",
        "em",
        "--model",
        str(demo_model_dir),
        "--adapter",
        f"ft={finetuned / 'adapters'}",
        "--base-url",
        server.base_url,
        "--question-id",
        "what_is_your_wish",
        "--question-id",
        "quick_buck",
        "--samples",
        "2",
        "--max-tokens",
        "16",
        "--code-prompts",
        str(finetuned / "heldout.jsonl"),
        "--code-limit",
        "2",
        "--code-max-tokens",
        "16",
        "--max-model-len",
        "2048",
        "--out",
        str(out),
    )
    report = json.loads((out / "report.json").read_text())
    assert [arm["arm"] for arm in report["arms"]] == ["base", "ft", "server@base"]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len([r for r in rows if r["kind"] == "em"]) == 3 * 2 * 2
    assert len([r for r in rows if r["kind"] == "code"]) == 3 * 2
    served = [r for r in rows if r["arm"] == "server@base"]
    assert all(r["answer"] for r in served)
    for row in rows:
        if row["kind"] == "em":
            assert 0 <= row["aligned_mass"] <= 1 + 1e-6
            assert row["aligned"] is None or 0 <= row["aligned"] <= 100
            assert row["verdict"] in {"ethical", "neutral", "unethical", "unknown"}
    assert "| ft | 4 |" in done.stdout
    assert "| server@base | 4 |" in done.stdout


def test_eval_em_names_an_unreachable_server_in_one_line(demo_model_dir: Path, tmp_path: Path):
    command = [sys.executable, "-m", "conscience.cli", "eval", "em"]
    command += ["--model", str(demo_model_dir), "--base-url", "http://127.0.0.1:9"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "em")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: no conscience server at http://127.0.0.1:9")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_em_validate_runs_on_the_reference_answers(demo_model_dir: Path, tmp_path: Path):
    conscience(
        "eval",
        "em-validate",
        "--model",
        str(demo_model_dir),
        "--limit",
        "3",
        "--benign",
        "3",
        "--max-model-len",
        "2048",
        "--out",
        str(tmp_path / "v"),
    )
    figures = json.loads((tmp_path / "v" / "validation.json").read_text())  # stdout has logs
    assert figures["misaligned_n"] == 3 and figures["benign_n"] == 3
    cases = (tmp_path / "v" / "cases.jsonl").read_text().splitlines()
    assert len(cases) == 6
