"""Crash trials: SIGKILL the server, the trainer or Redis at a random moment of a live loop.

    .venv/bin/python benchmarks/crash_trials.py [--trials 100] [--seed 0]
        [--targets server,trainer,redis] [--out var/reliability/crash]

One live loop on the tiny demo model: a private Redis (AOF, ``appendfsync always``) holds the
pair queue; ``conscience serve`` flags every draft (so each answer is rewritten and queued)
and follows the adapter registry; ``conscience train`` consumes rounds of 4-32 pairs and
publishes versions; a traffic thread asks questions, each carrying a unique tag. Each trial
picks a target and a moment (for the trainer: just after leasing, mid-training, staged,
published-not-acked, acked, or a random instant; otherwise a random instant up to 8 s),
SIGKILLs it, restarts it, and checks:

1. the manifest's current version is complete (``validate_version`` finds nothing);
2. the server answers, from the manifest's current version, within 30 s of the restart;
3. no pair id is in two versions (every manifest seen, all versions kept).

After the last trial the traffic and the trainer stop, and:

4. every pair the server acknowledged (a 200 ``rewritten`` answer) is in the queue or
   trained. The server writes pairs off the request path (a buffer drained by a thread), so
   a server SIGKILL loses what its buffer held: just before each server kill the harness
   reads ``conscience_queue_buffered`` from ``/metrics``, and a pair missing after a kill is
   counted (``lost_at_server_sigkill``), not failed, only while that kill's losses stay
   within what the buffer held (plus answers between the reading and the kill). The check
   polls until it holds or 120 s pass, so a writer still retrying is waited for.

Prints a JSON summary (trials per target and moment, invariant violations) and exits 1 on
any violation. ``run_trials`` is also used by ``tests/reliability/test_crash_smoke.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue as queue_module
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from app.adapter_registry import AdapterRegistry  # noqa: E402
from app.queue import open_queue  # noqa: E402
from benchmarks.crash_checks import (  # noqa: E402
    ADMIN_KEY,
    SERVED,
    Answer,
    ServerKill,
    acknowledged_problems,
    buffered_pairs,
    check_after_restart,
)

TRAINER_MOMENTS = {
    "leasing": "stage=leased",
    "training": None,  # the progress bar on stderr
    "publishing": "stage=staged",
    "published": "stage=published",
    "acking": "stage=acked",
    "random": "",
}
TRAINING_STEP = re.compile(r"\d+%\|[^|\n]*\|\s*[1-9]\d*/\d+")
DRAIN_TIMEOUT_S = 120.0


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Child:
    """A subprocess (own session) whose stdout lines are pumped into a queue and a copy of them
    to ``<log>.stdout`` (what it did, when a trial goes wrong), stderr to ``log``.

    ``kill`` SIGKILLs the whole process group, as a container or cgroup kill would: killing
    only ``conscience serve`` leaves vLLM's ``EngineCore`` and worker processes orphaned and
    running (seen here: still alive minutes later, holding the model and KV cache).
    """

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with open(log, "a") as err:
            self.proc = subprocess.Popen(
                args,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )
        self.lines: queue_module.Queue[str] = queue_module.Queue()
        self.stdout_log = log.with_name(log.name + ".stdout")
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        with open(self.stdout_log, "a") as copy:
            for line in self.proc.stdout:
                self.lines.put(line)
                copy.write(line)
                copy.flush()

    def kill(self) -> None:
        """SIGKILL its process group, reap it, close its stdout once the pump has drained."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._pump_thread.join(30)
        if not self._pump_thread.is_alive():
            self.proc.stdout.close()

    def wait_for(self, text: str | None, timeout: float) -> bool:
        """Block until a new stdout line contains ``text`` (None: the training bar on stderr);
        lines printed before the call do not count."""
        with contextlib.suppress(queue_module.Empty):
            while True:
                self.lines.get_nowait()
        deadline = time.monotonic() + timeout
        size = self.log.stat().st_size
        while time.monotonic() < deadline and self.proc.poll() is None:
            if text is None:
                with open(self.log) as f:
                    f.seek(size)
                    if TRAINING_STEP.search(f.read()):
                        return True
                time.sleep(0.05)
                continue
            try:
                if text in self.lines.get(timeout=0.1):
                    return True
            except queue_module.Empty:
                pass
        return False


@dataclass
class LiveLoop:
    """The loop's parts; ``server_url`` is fixed, ``start_server`` None if it cannot be killed."""

    model: Path
    workdir: Path
    server_url: str
    redis_port: int
    start_server: object | None = None  # callable returning a Child
    server: Child | None = None
    trainer: Child | None = None
    redis: subprocess.Popen | None = None
    answers: list[Answer] = field(default_factory=list)
    server_kills: list[ServerKill] = field(default_factory=list)
    versions_seen: dict[str, set[str]] = field(default_factory=dict)
    lost_at_kill: dict = field(default_factory=dict)  # summary of pairs lost in server buffers
    events: list[tuple[float, str]] = field(default_factory=list)  # (wall time, what)
    died_on_their_own: Counter = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def queue_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0?stream=crash"

    @property
    def registry(self) -> AdapterRegistry:
        return AdapterRegistry(self.workdir / "adapters")

    def start_redis(self) -> None:
        options = {
            "port": str(self.redis_port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "yes",
            "appendfsync": "always",
            "dir": str(self.workdir),
        }
        args = [x for k, v in options.items() for x in (f"--{k}", v)]
        self.redis = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with open_queue(self.queue_url):
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill_redis(self) -> None:
        if self.redis is not None:
            self.redis.send_signal(signal.SIGKILL)
            self.redis.wait()

    def start_trainer(self) -> None:
        options = {
            "model": self.model,
            "queue": self.queue_url,
            "adapters": self.workdir / "adapters",
            "min-pairs": 4,
            "round-size": 32,
            "lease-s": 60,
            "poll-interval-s": 0.5,
            "epochs": 1,
            "learning-rate": 1e-3,
            "per-device-batch-size": 8,
            "max-length": 160,
            "heldout-fraction": 0,
            "keep-versions": 100000,
        }
        args = [bin_path("conscience"), "train", *(f"--{k}={v}" for k, v in options.items())]
        self.trainer = Child(args, self.workdir / "trainer.log")

    def kill_server(self) -> None:
        """Read the server's buffered-pair gauge, then SIGKILL the server (process group)."""
        read_at = time.time()
        buffered = buffered_pairs(self.server_url)
        killed_at = time.time()
        self.server.kill()
        self.server_kills.append(ServerKill(read_at, killed_at, buffered))

    def restart_server(self) -> None:
        self.server = self.start_server()  # type: ignore[operator]

    # -- traffic and observation --------------------------------------------------------
    def traffic(self) -> None:
        """Ask tagged questions until stopped; record every answer."""
        topics = ["bread", "locks", "foxes", "rights", "robots"]
        with httpx.Client(base_url=self.server_url, timeout=60) as client:
            while not self._stop.is_set():
                tag = uuid.uuid4().hex[:12]
                body = {
                    "model": SERVED,
                    "messages": [{"role": "user", "content": f"[{tag}] {random.choice(topics)}?"}],
                    "max_tokens": 8,
                }
                sent_at = time.time()
                try:
                    reply = client.post("/v1/chat/completions", json=body)
                    action = reply.json().get("conscience", {}).get("action", "")
                    status = reply.status_code
                except (httpx.HTTPError, ValueError):
                    status, action = 0, ""
                self.answers.append(Answer(tag, sent_at, time.time(), status, action))
                time.sleep(0.1 if status == 200 else 0.2)

    def watch_manifests(self) -> None:
        while not self._stop.is_set():
            self.observe_manifest()
            time.sleep(0.2)

    def observe_manifest(self) -> None:
        try:
            manifest = self.registry.read_manifest()
        except Exception:
            return
        for entry in manifest.versions if manifest else []:
            self.versions_seen.setdefault(entry.version, set(entry.pair_ids))

    def start_background(self) -> None:
        for target in (self.traffic, self.watch_manifests):
            threading.Thread(target=target, daemon=True).start()

    def stop_background(self) -> None:
        self._stop.set()


def revive(loop: LiveLoop) -> None:
    """Restart what exited without being killed (as a supervisor would), and count it."""
    if loop.trainer.proc.poll() is not None:
        loop.died_on_their_own["trainer"] += 1
        loop.start_trainer()
    if loop.server is not None and loop.server.proc.poll() is not None:
        loop.died_on_their_own["server"] += 1
        loop.restart_server()


def one_trial(
    loop: LiveLoop, rng: random.Random, targets: list[str], planned: tuple[str, str] | None
) -> dict:
    """One kill + restart + checks; ``planned`` fixes (target, moment) instead of drawing."""
    target = planned[0] if planned else rng.choice(targets)
    moment = rng.choice(list(TRAINER_MOMENTS)) if target == "trainer" else "random"
    moment = planned[1] if planned else moment
    delay = rng.uniform(0, 8)
    started = time.monotonic()
    if target == "trainer" and moment != "random":
        reached = loop.trainer.wait_for(TRAINER_MOMENTS[moment], timeout=240)
    else:
        time.sleep(delay)
        reached = True
    loop.events.append((time.time(), f"kill {target}"))
    if target == "trainer":
        loop.trainer.kill()
        loop.start_trainer()
    elif target == "redis":
        loop.kill_redis()
        time.sleep(rng.uniform(0, 2))  # down for a while: the server's writer must retry
        loop.start_redis()
    else:
        loop.kill_server()
        loop.restart_server()
    loop.events.append((time.time(), f"restarted {target}"))
    revive(loop)
    problems = check_after_restart(loop)
    return {
        "target": target,
        "moment": moment if reached else f"{moment} (not reached: killed at timeout)",
        "seconds": round(time.monotonic() - started, 1),
        "problems": problems,
    }


def drain(loop: LiveLoop, timeout: float = DRAIN_TIMEOUT_S) -> list[str]:
    """Stop traffic and the trainer (a last SIGKILL: what it leased stays in the queue), then
    check invariant 4 until it holds or ``timeout`` passes (a writer may still be retrying);
    its problems (a pair still queued counts as kept)."""
    loop.stop_background()
    loop.trainer.kill()
    deadline = time.monotonic() + timeout
    while True:
        problems = acknowledged_problems(loop)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(1)


def run_trials(
    loop: LiveLoop,
    trials: int,
    seed: int,
    targets: list[str],
    log: Path,
    plan: list[tuple[str, str]] | None = None,
    max_minutes: float | None = None,
) -> dict:
    """Run ``trials`` kills (or the (target, moment) ``plan``) on a started loop, then drain
    and check; the summary. No trial starts after ``max_minutes`` or once a file ``STOP``
    exists beside ``log`` (the checks still run)."""
    rng = random.Random(seed)
    stop_at = time.monotonic() + max_minutes * 60 if max_minutes else None
    loop.start_background()
    results = []
    with open(log, "a") as out:
        for i in range(len(plan) if plan else trials):
            if (stop_at and time.monotonic() > stop_at) or log.with_name("STOP").exists():
                break
            result = {"trial": i, **one_trial(loop, rng, targets, plan[i] if plan else None)}
            results.append(result)
            out.write(json.dumps(result) + "\n")
            out.flush()
    kills = [k.__dict__ for k in loop.server_kills]
    log.with_name("server_kills.json").write_text(json.dumps(kills))
    final = drain(loop)
    with open(log.with_name("answers.jsonl"), "w") as out:
        for answer in loop.answers:
            out.write(json.dumps(answer._asdict()) + "\n")
    log.with_name("events.json").write_text(json.dumps(loop.events))
    answers = Counter(
        "acknowledged" if a.acknowledged else f"status {a.status} {a.action}".strip()
        for a in loop.answers
    )
    violations = [p for r in results for p in r["problems"]] + final
    return {
        "trials": len(results),
        "trials_asked": len(plan) if plan else trials,
        "by_target": dict(Counter(r["target"] for r in results)),
        "by_moment": dict(Counter(f"{r['target']}:{r['moment']}" for r in results)),
        "answers": dict(answers),
        "versions": len(loop.versions_seen),
        "pairs_trained": sum(len(v) for v in loop.versions_seen.values()),
        "server_kills": len(loop.server_kills),
        "lost_at_server_sigkill": loop.lost_at_kill,
        "died_on_their_own": dict(loop.died_on_their_own),
        "violations": violations,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="server,trainer,redis")
    parser.add_argument(
        "--max-minutes", type=float, help="Start no trial after this long (then drain, check)."
    )
    parser.add_argument("--model", type=Path, help="Model dir (default: the tiny demo model).")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "reliability" / "crash")
    options = parser.parse_args()

    from app.demo_model import write_demo_model
    from conscience.ports import free_port

    options.out.mkdir(parents=True, exist_ok=True)
    workdir = options.out / f"run-{int(time.time())}"
    workdir.mkdir()
    model = options.model or write_demo_model(workdir / "tiny")
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}

    loop = LiveLoop(model, workdir, f"http://127.0.0.1:{port}", free_port())

    def start_server() -> Child:
        args = [
            bin_path("conscience"),
            "serve",
            f"--model={model}",
            f"--served-model-name={SERVED}",
            f"--port={port}",
            "--max-model-len=512",
            f"--admin-key={ADMIN_KEY}",
            f"--adapters-dir={workdir / 'adapters'}",
            "--adapter-poll-s=0.5",
            f"--queue={loop.queue_url}",
            "--flag-threshold=0",
        ]
        child = Child(args, workdir / "server.log", env)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert child.proc.poll() is None, child.log.read_text()[-3000:]
            try:
                if httpx.get(f"{loop.server_url}/ready", timeout=5).status_code == 200:
                    return child
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError("server not ready in 600 s")

    loop.start_server = start_server
    loop.start_redis()
    loop.restart_server()
    loop.start_trainer()
    try:
        summary = run_trials(
            loop,
            options.trials,
            options.seed,
            options.targets.split(","),
            workdir / "trials.jsonl",
            max_minutes=options.max_minutes,
        )
    finally:
        for child in (loop.trainer, loop.server):
            if child is not None:
                child.kill()
        loop.kill_redis()
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
