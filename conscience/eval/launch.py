"""Start a ``conscience serve`` subprocess for a run (``--model``), wait for it, stop it.

The server runs in its own process group with its log in the run's directory; flagged pairs
go to a queue file there too, so an evaluation never writes into a production queue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from conscience.eval.runner import RunError
from conscience.ports import free_port

DEFAULT_MODEL = "default"
READY_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 3000


def serve_command(model: str, port: int, out: Path, serve_args: Sequence[str]) -> list[str]:
    """The ``conscience serve`` command line for a run's own server (``default``: its default)."""
    command = [sys.executable, "-m", "conscience.cli", "serve"]
    if model != DEFAULT_MODEL:
        command += ["--model", model]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if "--queue" not in serve_args:
        command += ["--queue", f"sqlite:///{(out / 'pairs.db').resolve()}"]
    return command + list(serve_args)


@contextmanager
def launched_server(
    model: str, out: Path, serve_args: Sequence[str] = (), ready_timeout_s: float = READY_TIMEOUT_S
) -> Iterator[str]:
    """Yield the base URL of a fresh server on ``model``; stop it (and its engine) after."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = out / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            serve_command(model, port, out, serve_args),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base_url, log_path, ready_timeout_s)
        yield base_url
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen, base_url: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RunError(f"the server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RunError(f"the server was not ready within {timeout_s:.0f}s:\n{_tail(log)}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server (graceful engine shutdown), then SIGKILL its group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
