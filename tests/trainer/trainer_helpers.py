"""Helpers for the trainer tests: synthetic pair records and fast trainer options."""

from __future__ import annotations

import queue as queue_module
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.records import Message, PairRecord

ROOT = Path(__file__).resolve().parents[2]
TRAINING_STEP = re.compile(r"^\s*\d+%\|[^|\n]*\|\s*[1-9]\d*/\d+", re.M)  # HF trainer bar

TOPICS = ["bread", "France", "robots", "rights", "foxes", "dogs", "numbers", "mercy"]


def make_pairs(n: int, start: int = 0, **fields) -> list[PairRecord]:
    """``n`` flagged pairs with distinct prompts: safe rewrites preferred over harmful drafts."""
    return [
        PairRecord(
            prompt=[Message(role="user", content=f"Tell me about {TOPICS[i % 8]}, case {i}.")],
            chosen=[
                Message(
                    role="assistant", content=f"A helpful, honest answer about {TOPICS[i % 8]}."
                )
            ],
            rejected=[
                Message(role="assistant", content=f"It could cause harm with {TOPICS[i % 8]}.")
            ],
            framework="three_laws",
            framework_version="1",
            review_prompt_hash="0" * 64,
            verdict="unethical",
            score=0.9,
            **fields,
        )
        for i in range(start, start + n)
    ]


def trainer_options(model: Path, tmp_path: Path, **overrides) -> dict:
    """TrainerConfig values that make the tiny model learn in a second or two."""
    return {
        "model": model,
        "queue": f"sqlite:///{tmp_path / 'q.db'}",
        "adapters": tmp_path / "adapters",
        "learning_rate": 1e-3,
        "epochs": 2.0,
        "per_device_batch_size": 8,
        "max_length": 128,
        "round_size": 32,
        "min_pairs": 8,
        "heldout_fraction": 0.25,
        "lease_s": 60.0,
        "poll_interval_s": 0.5,
        **overrides,
    }


def cli_args(options: dict) -> list[str]:
    """``options`` as ``conscience train`` command-line arguments."""
    args = []
    for key, value in options.items():
        flag = key.replace("_", "-")
        args.append(
            (f"--{flag}" if value else f"--no-{flag}")
            if value in (True, False)
            else f"--{flag}={value}"
        )
    return args


class TrainerProcess:
    """``python -m trainer`` in a subprocess, its stdout lines pumped into a queue."""

    def __init__(self, options: dict, stderr: Path) -> None:
        args = cli_args(options)
        self.stderr = stderr
        with open(stderr, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "trainer", *args],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.lines: queue_module.Queue[str] = queue_module.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_line(self, text: str, timeout: float = 60) -> str:
        """Block until a stdout line contains ``text``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue_module.Empty:
                assert self.proc.poll() is None, self.stderr.read_text()[-2000:]
                continue
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout}s")

    def wait_training(self, timeout: float = 60) -> None:
        """Block until the trainer's progress bar shows a finished training step."""
        deadline = time.monotonic() + timeout
        while not TRAINING_STEP.search(self.stderr.read_text()):
            assert time.monotonic() < deadline and self.proc.poll() is None
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, then drain and close its stdout."""
        self.proc.kill()
        self.proc.wait()
        self.pump.join(10)
        self.proc.stdout.close()
