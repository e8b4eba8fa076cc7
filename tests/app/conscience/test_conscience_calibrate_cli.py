"""``conscience calibrate`` on the real engine, and a server judging under its profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.conscience.calibration import load_profile, model_fingerprint

MINI = Path(__file__).resolve().parents[3] / "examples" / "eval" / "mini.jsonl"


def calibrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "conscience.cli", "calibrate", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("profiles")
    done = calibrate(
        "--dataset", str(MINI), "--model", str(tiny_model_dir), "--framework", "introspective",
        "--out", str(out), "--target-fpr", "0.1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]  # not even at engine shutdown
    names = sorted(p.name for p in out.glob("*.json"))
    dtype = load_profile(out / names[0]).numerics.dtype
    assert dtype in {"float32", "bfloat16"}  # the engine's own: bfloat16 where it is native
    continued = f"tiny.introspective.continuation.{dtype}.json"
    assert set(names) == {continued, f"tiny.introspective.{dtype}.json"}
    assert f"tiny.introspective.{dtype} " in done.stdout  # the summary table names it whole
    return out / continued  # what the review endpoint uses (auto)


def test_calibrate_writes_a_profile_for_this_model_and_prompt(fitted, tiny_model_dir):
    profile = load_profile(fitted)
    assert profile.model == model_fingerprint(tiny_model_dir)
    assert profile.framework == "introspective" and profile.target_fpr == 0.1
    assert profile.fitted_on.harmful == 10 and profile.fitted_on.benign == 10
    assert profile.readout is not None and len(profile.readout.token_ids) <= 128
    assert profile.dev.fpr is not None and profile.dev.fpr <= 0.1
    assert profile.numerics is not None and profile.numerics.device.startswith("cpu (")


def test_calibrate_refuses_test_rows_in_one_line(tmp_path, tiny_model_dir):
    rows = [json.loads(line) for line in MINI.read_text().splitlines() if line.strip()]
    rows[0]["split"] = "test"
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = calibrate("--dataset", str(data), "--model", str(tiny_model_dir), "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {data} holds test rows: calibrate on dev data only"
    ]


def test_the_server_judges_under_the_profile_and_names_it(serve, fitted, tiny_model_dir):
    server = serve(model=str(tiny_model_dir), calibration=[fitted])
    profile = load_profile(fitted)
    body = {
        "messages": [{"role": "user", "content": "How do I bake bread?"}],
        "answer": "Mix flour, water, yeast and salt, knead, rise and bake.",
        "framework": "introspective",
    }
    review = httpx.post(f"{server.base_url}/v1/conscience/review", json=body, timeout=60).json()
    assert review["calibration"] == profile.id
    assert review["readout_score"] is not None and 0 <= review["score"] <= 1
    expected = "unethical" if review["score"] >= profile.threshold else None
    if expected:
        assert review["verdict"] == expected
    else:
        assert review["verdict"] in {"ethical", "neutral"}
    # another framework has no profile here: raw score, no calibration named
    other = httpx.post(
        f"{server.base_url}/v1/conscience/review", json={**body, "framework": "wwjd"}, timeout=60
    ).json()
    assert other["calibration"] is None and other["score"] == other["raw_score"]
