"""Soak: mixed traffic at fixed concurrency for a long time, with adapter swaps.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--concurrency 16] [--model DIR]
        [--swap-every-s 180] [--out var/reliability/soak]

Starts ``conscience serve`` (tiny demo model unless ``--model``; ``--flag-threshold``, default
0: every reviewed draft is flagged, since the tiny model's scores sit below 0.5) following an
adapter registry, and drives it with ``--concurrency`` clients sending a mix: streamed /
non-streamed, modes ``flag`` (flagged, not rewritten) / ``rewrite`` (rewritten, pair queued)
/ ``off`` (no review). Every ``--swap-every-s`` a real ``conscience train --once`` publishes a new
adapter version from the queued pairs (in a thread, beside the traffic; the server hot-swaps
to it, and the adapters the answers name are counted). Once a minute it samples the RSS of the
server and its engine processes, the open file descriptors of the server (and of all its
processes), its threads (``/proc``), its event loop's asyncio tasks (the
``conscience_event_loop_tasks`` gauge of ``/metrics``) and the window's latency p50 / p99.
Every answer must carry its conscience report (streamed ones in the final chunk); the
actions (passed / flagged / rewritten) are counted.

Pass criteria (checked at the end, exit 1 if any fails): 0 errors; RSS growth after the
warm-up (the first 20% of the run) at most 5%; open fds, threads and asyncio tasks not
growing (last sample at most the warm-up maximum + 2); p99 of the last window at most 2x the
first window after warm-up; at least one adapter swap served. Writes ``samples.jsonl`` and
``summary.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
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
    """RSS (MiB) and open fds of the server and its engine processes together (and the RSS
    of each), and the open fds and threads of the server process, from ``/proc``."""
    rss_kib, fds_all, by_process = 0, 0, {}
    for member in descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
            fds_all += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            continue
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        rss_kib += kib
        name = status.splitlines()[0].split(maxsplit=1)[1]
        by_process[f"{name}:{member}"] = round(kib / 1024, 1)
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    threads = next(int(line.split()[1]) for line in status if line.startswith("Threads"))
    return {
        "rss_mib": round(rss_kib / 1024, 1),
        "rss_mib_by_process": by_process,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "fds_all": fds_all,
        "threads": threads,
    }


def loop_tasks(base_url: str) -> int | None:
    """The server's asyncio task count (``conscience_event_loop_tasks`` on ``/metrics``)."""
    try:
        text = httpx.get(f"{base_url}/metrics", timeout=30).text
    except httpx.HTTPError:
        return None
    found = re.search(r"^conscience_event_loop_tasks ([0-9.e+]+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else None


def report_of(reply_text: str, streamed: bool) -> dict | None:
    """The conscience report of an answer (a streamed one: from its final chunk)."""
    if not streamed:
        return json.loads(reply_text).get("conscience")
    for line in reply_text.splitlines():
        if line.startswith("data: {") and '"conscience"' in line:
            return json.loads(line[len("data: ") :]).get("conscience")
    return None


class Traffic:
    """``concurrency`` threads sending the mix; latencies and errors per window."""

    def __init__(self, base_url: str, concurrency: int, seed: int) -> None:
        self.base_url, self.concurrency = base_url, concurrency
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.requests = 0
        self.actions: Counter[str] = Counter()
        self.adapters: Counter[str] = Counter()
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
        with httpx.Client(base_url=self.base_url, timeout=600) as client:
            while not self.stop.is_set():
                body = self.body()
                started = time.perf_counter()
                report, error = None, None
                try:
                    if body["stream"]:
                        with client.stream("POST", "/v1/chat/completions", json=body) as reply:
                            text = "".join(reply.iter_text())
                            ok = reply.status_code == 200 and "[DONE]" in text
                    else:
                        reply = client.post("/v1/chat/completions", json=body)
                        text, ok = reply.text, reply.status_code == 200
                    report = report_of(text, body["stream"]) if ok else None
                    if report is None:
                        error = f"{reply.status_code} {'stream' if body['stream'] else 'json'}"
                        error += "" if not ok else " without a conscience report"
                except (httpx.HTTPError, ValueError) as exc:
                    error = repr(exc)
                with self.lock:
                    self.requests += 1
                    self.latencies.append(time.perf_counter() - started)
                    if error:
                        self.errors.append(error)
                    else:
                        self.actions[f"{body['conscience']['mode']}:{report.get('action')}"] += 1
                        self.adapters[str(report.get("adapter"))] += 1

    def start(self) -> None:
        for _ in range(self.concurrency):
            threading.Thread(target=self.worker, daemon=True).start()

    def window(self) -> list[float]:
        with self.lock:
            taken, self.latencies = self.latencies, []
        return taken


def p(values: list[float], q: float) -> float | None:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else None


def serve(model: Path, workdir: Path, port: int, threshold: float) -> subprocess.Popen:
    args = [
        bin_path("conscience"),
        "serve",
        f"--model={model}",
        f"--served-model-name={SERVED}",
        f"--port={port}",
        "--max-model-len=512",
        f"--adapters-dir={workdir / 'adapters'}",
        f"--queue=sqlite:///{workdir / 'pairs.db'}",
        f"--flag-threshold={threshold}",
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


def swap_loop(
    model: Path, workdir: Path, every_s: float, stop: threading.Event, rounds: list[int]
) -> None:
    """A training round every ``every_s`` until ``stop``; each exit code into ``rounds``."""
    while not stop.wait(every_s):
        rounds.append(train_once(model, workdir))


def judge(samples: list[dict], errors: int) -> dict:
    """The pass criteria of the module docstring over the per-minute samples."""
    warm = max(1, len(samples) // 5)
    after, last = samples[warm:] or samples[-1:], samples[-1]
    rss_growth = (last["rss_mib"] - after[0]["rss_mib"]) / after[0]["rss_mib"]
    p99s = [s["p99_s"] for s in after if s["p99_s"] is not None]
    checks = {
        "errors == 0": errors == 0,
        "rss growth after warm-up <= 5%": rss_growth <= 0.05,
        "p99 last <= 2x first after warm-up": not p99s or p99s[-1] <= 2 * p99s[0],
    }
    for key in ("fds", "fds_all", "threads", "tasks"):
        seen = [s[key] for s in samples[:warm] if s[key] is not None]
        checks[f"{key} not growing"] = (
            bool(seen) and last[key] is not None and last[key] <= max(seen) + 2
        )
    return {"rss_growth_after_warmup": round(rss_growth, 4), "checks": checks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--swap-every-s", type=float, default=180)
    parser.add_argument("--sample-every-s", type=float, default=60)
    parser.add_argument("--model", type=Path, help="Model dir (default: the tiny demo model).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flag-threshold", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "reliability" / "soak")
    options = parser.parse_args()

    from app.demo_model import write_demo_model
    from conscience.ports import free_port

    workdir = options.out / f"run-{int(time.time())}"
    workdir.mkdir(parents=True)
    model = options.model or write_demo_model(workdir / "tiny")
    port = free_port()
    server = serve(model, workdir, port, options.flag_threshold)
    traffic = Traffic(f"http://127.0.0.1:{port}", options.concurrency, options.seed)
    samples: list[dict] = []
    rounds: list[int] = []  # exit codes of the training rounds
    trainer = threading.Thread(
        target=swap_loop,
        args=(model, workdir, options.swap_every_s, traffic.stop, rounds),
        daemon=True,
    )
    try:
        traffic.start()
        started = time.monotonic()
        trainer.start()
        with open(workdir / "samples.jsonl", "w") as out:
            while time.monotonic() - started < options.minutes * 60:
                time.sleep(options.sample_every_s)
                window = traffic.window()
                sample = {
                    "t_s": round(time.monotonic() - started),
                    **proc_sample(server.pid),
                    "tasks": loop_tasks(f"http://127.0.0.1:{port}"),
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
        if trainer.is_alive():
            trainer.join(600)
        server.terminate()
        server.wait(60)
    verdict = judge(samples, len(traffic.errors))
    served_versions = sorted(a for a in traffic.adapters if a != "None")
    verdict["checks"]["adapter swaps served"] = bool(served_versions)
    summary = {
        "minutes": options.minutes,
        "concurrency": options.concurrency,
        "requests": traffic.requests,
        "errors": len(traffic.errors),
        "first_errors": traffic.errors[:5],
        "actions": dict(sorted(traffic.actions.items())),
        "training_rounds": {"ok": rounds.count(0), "failed": len(rounds) - rounds.count(0)},
        "versions_served": len(served_versions),
        "answers_by_adapter": dict(sorted(traffic.adapters.items())),
        "p99_by_window_s": [s["p99_s"] for s in samples],
        "first_sample": samples[0] if samples else None,
        "last_sample": samples[-1] if samples else None,
        **verdict,
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if all(verdict["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
