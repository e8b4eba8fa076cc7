"""``conscience eval`` end to end: the CLI, the real server, the tiny model on the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conscience.eval.cli import eval_app
from conscience.eval.launch import serve_command

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "eval"
ROWS = 32  # examples/eval/mini.jsonl: 20 fixed answers, 12 prompts
ANSWERS, PROMPTS = 20, 12


def _invoke(*args: str):
    result = CliRunner().invoke(eval_app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def rewrite_run(flagging_server, tmp_path_factory) -> Path:
    """One run in rewrite mode on a server that flags everything, with one injection."""
    out = tmp_path_factory.mktemp("eval") / "run"
    result = _invoke(
        "run",
        "--dataset", EXAMPLES / "mini.jsonl",
        "--out", out,
        "--base-url", flagging_server.base_url,
        "--framework", "three_laws",
        "--framework", "wwjd",
        "--mode", "rewrite",
        "--injection", "fake_delimiter",
        "--max-tokens", "8",
        "--threshold", "0.5",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_run_writes_report_results_and_plots(rewrite_run):
    report = json.loads((rewrite_run / "report.json").read_text())
    assert [fw["framework"] for fw in report["frameworks"]] == ["three_laws", "wwjd"]
    lines = (rewrite_run / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * (ROWS + ANSWERS)
    for fw in report["frameworks"]:
        judge, chat = fw["judge"], fw["chat"]
        assert judge["n"] == ANSWERS and judge["errors"] == 0
        assert judge["verdicts"] == {"unethical": ANSWERS}, "threshold 0 flags every answer"
        assert [d["rule"] for d in judge["detection"]] == ["verdict", "score >= 0.5"]
        assert judge["detection"][0]["confusion"] == {"tp": 10, "fp": 10, "tn": 0, "fn": 0}
        assert judge["auroc"]["value"] is not None and 0.0 <= judge["auroc"]["value"] <= 1.0
        assert chat["n"] == PROMPTS and chat["errors"] == 0
        assert chat["rewrites"] == PROMPTS and chat["rewrite_rate"] == 1.0
        assert chat["rewrite_pass_rate"] == 0.0, "the re-review flags too (threshold 0)"
        assert chat["latency_ms"]["review"]["p50"] > 0 and 0 < chat["review_share"] < 1
        by_verdict, by_threshold = fw["injections"]
        assert by_verdict["name"] == "fake_delimiter" and by_verdict["pairs"] == ANSWERS
        assert by_verdict["rule"] == "verdict" and by_threshold["rule"] == "score >= 0.5"
        assert by_verdict["base_flagged"] == ANSWERS and by_verdict["escaped"] == 0
        assert fw["review_layout"] == "continuation" and fw["framework_hash"]  # auto, base drafts
    for name in ("reliability-three_laws.png", "scores-wwjd.png", "report.md"):
        assert (rewrite_run / name).stat().st_size > 0
    text = (rewrite_run / "report.md").read_text()
    assert "## Judge on fixed answers" in text and "## Prompt injection aimed at the judge" in text


def test_report_can_be_rebuilt_at_another_threshold(rewrite_run):
    result = _invoke("report", rewrite_run, "--threshold", "1.0", "--no-plots")
    assert result.exit_code == 0, result.output
    report = json.loads((rewrite_run / "report.json").read_text())
    assert report["threshold"] == 1.0
    judge = report["frameworks"][0]["judge"]
    assert judge["detection"][1]["rule"] == "score >= 1"
    assert judge["detection"][1]["confusion"]["tp"] + judge["detection"][1]["confusion"]["fp"] == 0


def test_compare_two_frameworks_of_one_run(rewrite_run, tmp_path):
    out = tmp_path / "cmp.json"
    result = _invoke(
        "compare", f"{rewrite_run}:three_laws", f"{rewrite_run}:wwjd", "--b-threshold", "0.99",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    comparison = json.loads(out.read_text())
    assert comparison["paired"] == ANSWERS and comparison["kind"] == "judge"
    flags = {m["metric"]: m for m in comparison["metrics"]}["flag rate"]
    assert flags["a"] == 1.0
    assert "| AUROC |" in result.output
    unnamed = _invoke("compare", rewrite_run, rewrite_run)
    assert unnamed.exit_code == 1 and "several frameworks" in unnamed.output


def test_flag_mode_on_the_default_server_from_csv(server, tmp_path):
    out = tmp_path / "run"
    result = _invoke(
        "run", "--dataset", EXAMPLES / "mini.csv", "--out", out, "--base-url", server.base_url,
        "--max-tokens", "4", "--no-progress", "--no-plots",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (fw,) = json.loads((out / "report.json").read_text())["frameworks"]
    assert fw["requested"] == "default" and fw["framework"] == "introspective"
    assert fw["judge"]["n"] == 4 and fw["chat"]["n"] == 2
    assert fw["chat"]["rewrites"] == 0, "flag mode never rewrites"
    assert not list(out.glob("*.png"))


def test_cli_errors_are_one_line(server, tmp_path):
    both = _invoke(
        "run", "--dataset", EXAMPLES / "mini.csv", "--out", tmp_path / "x",
        "--base-url", server.base_url, "--model", "m",
    )  # fmt: skip
    assert both.exit_code == 1 and "exactly one of --base-url or --model" in both.output
    layout = _invoke(
        "run", "--dataset", EXAMPLES / "mini.csv", "--out", tmp_path / "x",
        "--base-url", server.base_url, "--review-layout", "continuation",
    )  # fmt: skip
    assert layout.exit_code == 1 and "need --model" in layout.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "label": "benign"}\n{"prompt": "hi"}\n')
    parse = _invoke("run", "--dataset", bad, "--out", tmp_path / "y", "--base-url", server.base_url)
    assert parse.exit_code == 1 and "bad.jsonl:2: field 'label'" in parse.output


def test_convert_refuses_to_mix_dev_and_test(tmp_path):
    result = _invoke(
        "convert", "xstest-completions:gpt4", "jbb-artifacts", "--data-dir", tmp_path,
        "--out", tmp_path / "mixed.jsonl",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no such file" in result.output or "mix the dev and test" in result.output


def test_a_launched_server_gets_its_own_queue_and_options(tmp_path):
    command = serve_command("/models/m", 8123, tmp_path, ["--review-layout", "continuation"])
    assert command[1:4] == ["-m", "conscience.cli", "serve"]
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--queue") + 1] == f"sqlite:///{(tmp_path / 'pairs.db').resolve()}"
    assert command[-2:] == ["--review-layout", "continuation"]
    own = serve_command("default", 1, tmp_path, ["--queue", "sqlite:///q.db"])
    assert own.count("--queue") == 1 and "--model" not in own
