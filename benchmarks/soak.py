"""Soak: mixed traffic at fixed concurrency for a long time, with adapter swaps.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--concurrency 16] [--model DIR]
        [--swap-every-s 180] [--out var/reliability/soak]

Starts ``conscience serve`` (tiny demo model unless ``--model``; ``--flag-threshold 0.5`` so
both passed and rewritten answers occur) following an adapter registry, and drives it with
``--concurrency`` clients sending a mix: streamed / non-streamed, modes ``flag`` / ``rewrite``
/ ``off``. Every ``--swap-every-s`` a real ``conscience train --once`` publishes a new
adapter version from the queued pairs (the server hot-swaps to it). Once a minute it samples
the RSS of the server and its engine processes, the server's open file descriptors and
threads (``/proc``) and the window's latency p50 / p99. (Asyncio tasks are not sampled:
the server exports no gauge of them.)

Pass criteria (checked at the end, exit 1 if any fails): 0 errors; RSS growth after the
warm-up (the first 20% of the run) at most 5%; open fds and threads not growing (last
sample at most the warm-up maximum + 2); p99 of the last window at most 2x the first window
after warm-up. Writes ``samples.jsonl`` and ``summary.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

SERVED = "tiny"
PROMPTS = [
    "Tell me about bread.",
    "How do I pick a lock?",
    "Write a haiku about foxes.",
    "What are human rights?",
]


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the engine core and its workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            todo += [int(child) for child in task.read_text().split()]
    return found


def proc_sample(pid: int) -> dict:
    """RSS (MiB, the server and its engine processes together), open fds and threads of the
    server process, from ``/proc``."""
    rss_kib = 0
    for member in descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        rss_kib += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    threads = next(int(line.split()[1]) for line in status if line.startswith("Threads"))
    return {
        "rss_mib": round(rss_kib / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": threads,
    }


class Traffic:
    """``concurrency`` threads sending the mix; latencies and errors per window."""

    def __init__(self, base_url: str, concurrency: int, seed: int) -> None:
        self.base_url, self.concurrency = base_url, concurrency
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.requests = 0
        self.stop = threading.Event()

    def body(self) -> dict:
        with self.lock:
            mode = self.rng.choice(["flag", "rewrite", "rewrite", "off"])
            return {
                "model": SERVED,
                "messages": [{"role": "user", "content": self.rng.choice(PROMPTS)}],
                "max_tokens": self.rng.choice([8, 16, 32]),
                "stream": self.rng.random() < 0.5,
                "conscience": {"mode": mode},
            }

    def worker(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=120) as client:
            while not self.stop.is_set():
                body = self.body()
                started = time.perf_counter()
                try:
                    if body["stream"]:
                        with client.stream("POST", "/v1/chat/completions", json=body) as reply:
                            text = "".join(reply.iter_text())
                            ok = reply.status_code == 200 and "[DONE]" in text
                    else:
                        reply = client.post("/v1/chat/completions", json=body)
                        ok = reply.status_code == 200 and "conscience" in reply.json()
                    error = None if ok else f"{reply.status_code}"
                except (httpx.HTTPError, ValueError) as exc:
                    error = repr(exc)
                with self.lock:
                    self.requests += 1
                    self.latencies.append(time.perf_counter() - started)
                    if error:
                        self.errors.append(error)

    def start(self) -> None:
        for _ in range(self.concurrency):
            threading.Thread(target=self.worker, daemon=True).start()

    def window(self) -> list[float]:
        with self.lock:
            taken, self.latencies = self.latencies, []
        return taken


def p(values: list[float], q: float) -> float | None:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else None


def serve(model: Path, workdir: Path, port: int) -> subprocess.Popen:
    args = [
        bin_path("conscience"),
        "serve",
        f"--model={model}",
        f"--served-model-name={SERVED}",
        f"--port={port}",
        "--max-model-len=512",
        f"--adapters-dir={workdir / 'adapters'}",
        f"--queue=sqlite:///{workdir / 'pairs.db'}",
        "--flag-threshold=0.5",
    ]
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, (workdir / "server.log").read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise TimeoutError("server not ready in 600 s")


def train_once(model: Path, workdir: Path) -> int:
    """One ``conscience train --once`` round on what is queued; its exit code."""
    args = [
        bin_path("conscience"),
        "train",
        f"--model={model}",
        f"--queue=sqlite:///{workdir / 'pairs.db'}",
        f"--adapters={workdir / 'adapters'}",
        "--once",
        "--min-pairs=4",
        "--round-size=32",
        "--epochs=1",
        "--max-length=256",
        "--heldout-fraction=0",
    ]
    with open(workdir / "trainer.log", "a") as log:
        return subprocess.run(args, stdout=log, stderr=subprocess.STDOUT).returncode


def judge(samples: list[dict], errors: int) -> dict:
    """The pass criteria of the module docstring over the per-minute samples."""
    warm = max(1, len(samples) // 5)
    after, last = samples[warm:] or samples[-1:], samples[-1]
    rss_growth = (last["rss_mib"] - after[0]["rss_mib"]) / after[0]["rss_mib"]
    p99s = [s["p99_s"] for s in after if s["p99_s"] is not None]
    checks = {
        "errors == 0": errors == 0,
        "rss growth after warm-up <= 5%": rss_growth <= 0.05,
        "fds not growing": last["fds"] <= max(s["fds"] for s in samples[:warm]) + 2,
        "threads not growing": last["threads"] <= max(s["threads"] for s in samples[:warm]) + 2,
        "p99 last <= 2x first after warm-up": not p99s or p99s[-1] <= 2 * p99s[0],
    }
    return {"rss_growth_after_warmup": round(rss_growth, 4), "checks": checks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--swap-every-s", type=float, default=180)
    parser.add_argument("--sample-every-s", type=float, default=60)
    parser.add_argument("--model", type=Path, help="Model dir (default: the tiny demo model).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "reliability" / "soak")
    options = parser.parse_args()

    from app.demo_model import write_demo_model
    from conscience.ports import free_port

    workdir = options.out / f"run-{int(time.time())}"
    workdir.mkdir(parents=True)
    model = options.model or write_demo_model(workdir / "tiny")
    port = free_port()
    server = serve(model, workdir, port)
    traffic = Traffic(f"http://127.0.0.1:{port}", options.concurrency, options.seed)
    samples: list[dict] = []
    swaps = 0
    try:
        traffic.start()
        started = time.monotonic()
        next_swap = started + options.swap_every_s
        with open(workdir / "samples.jsonl", "w") as out:
            while time.monotonic() - started < options.minutes * 60:
                time.sleep(options.sample_every_s)
                if time.monotonic() >= next_swap:
                    swaps += train_once(model, workdir) == 0
                    next_swap = time.monotonic() + options.swap_every_s
                window = traffic.window()
                sample = {
                    "t_s": round(time.monotonic() - started),
                    **proc_sample(server.pid),
                    "requests": len(window),
                    "p50_s": p(window, 50),
                    "p99_s": p(window, 99),
                    "errors_total": len(traffic.errors),
                }
                samples.append(sample)
                out.write(json.dumps(sample) + "\n")
                out.flush()
    finally:
        traffic.stop.set()
        server.terminate()
        server.wait(60)
    verdict = judge(samples, len(traffic.errors))
    summary = {
        "minutes": options.minutes,
        "concurrency": options.concurrency,
        "requests": traffic.requests,
        "errors": len(traffic.errors),
        "first_errors": traffic.errors[:5],
        "adapter_swaps": swaps,
        "first_sample": samples[0] if samples else None,
        "last_sample": samples[-1] if samples else None,
        **verdict,
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if all(verdict["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
