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
   trained, unless the server was SIGKILLed within 2 s after that answer: the server's
   writer buffers pairs off the request path, so those few are counted, not failed.

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

from app.adapter_registry import AdapterRegistry, base_model_identity  # noqa: E402
from app.queue import open_queue  # noqa: E402

ADMIN_KEY, SERVED = "crash-admin-key", "tiny"
TRAINER_MOMENTS = {
    "leasing": "stage=leased",
    "training": None,  # the progress bar on stderr
    "publishing": "stage=staged",
    "published": "stage=published",
    "acking": "stage=acked",
    "random": "",
}
TRAINING_STEP = re.compile(r"\d+%\|[^|\n]*\|\s*[1-9]\d*/\d+")
BUFFER_WINDOW_S = 2.0


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Child:
    """A subprocess (own session) whose stdout lines are pumped into a queue, stderr to a file.

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
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

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
    answers: list[tuple[str, float, int, str]] = field(
        default_factory=list
    )  # tag, t, status, action
    server_kills: list[float] = field(default_factory=list)
    versions_seen: dict[str, set[str]] = field(default_factory=dict)
    buffered_at_kill: int = 0
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
                try:
                    reply = client.post("/v1/chat/completions", json=body)
                    action = reply.json().get("conscience", {}).get("action", "")
                    status = reply.status_code
                except (httpx.HTTPError, ValueError):
                    status, action = 0, ""
                self.answers.append((tag, time.time(), status, action))
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


def check_after_restart(loop: LiveLoop) -> list[str]:
    """Invariants 1-3 (see the module docstring); the problems found."""
    problems = []
    manifest = loop.registry.read_manifest()
    current = manifest.current if manifest else None
    if current:
        base = base_model_identity(loop.model, None)
        found = loop.registry.validate_version(current, base, 16)
        problems += [f"incomplete current version: {p}" for p in found]
    deadline = time.monotonic() + 30
    served, last = None, ""
    with httpx.Client(base_url=loop.server_url, timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                status = client.get(
                    "/admin/adapters", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
                ).json()
                wanted = status["manifest_current"]
                reply = client.post(
                    "/v1/chat/completions",
                    json={
                        "model": SERVED,
                        "messages": [{"role": "user", "content": "check"}],
                        "max_tokens": 2,
                    },
                )
                served = reply.json()["conscience"].get("adapter") if reply.is_success else None
                last = f"{reply.status_code} serving {served}, manifest {wanted}"
                if reply.is_success and served == wanted:
                    break
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last = repr(exc)
            time.sleep(0.5)
        else:
            problems.append(f"server not serving the manifest's version within 30 s: {last}")
    loop.observe_manifest()
    owners: dict[str, str] = {}
    for version, ids in sorted(loop.versions_seen.items()):
        for pid in ids:
            if pid in owners:
                problems.append(f"pair {pid} trained twice: {owners[pid]} and {version}")
            owners[pid] = version
    return problems


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
        loop.server.kill()
        loop.server_kills.append(time.time())
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


def drain(loop: LiveLoop) -> list[str]:
    """Stop traffic and the trainer (a last SIGKILL: what it leased stays in the queue);
    invariant 4's problems (a pair still queued counts as kept)."""
    loop.stop_background()
    time.sleep(3)  # the server's writer flushes
    loop.trainer.kill()
    with open_queue(loop.queue_url) as q:
        loop.observe_manifest()
        prompts = {r.id: r.prompt[-1].content for r in q.records(include_acked=True)}
        unacked = {r.id for r in q.records()}
    trained = set().union(*loop.versions_seen.values()) if loop.versions_seen else set()
    by_tag = {}
    for pid, text in prompts.items():
        match = re.match(r"\[(\w+)\]", text)
        if match:
            by_tag[match.group(1)] = pid
    problems, buffered_at_kill = [], 0
    for tag, answered_at, status, action in loop.answers:
        if status != 200 or action != "rewritten":
            continue
        pid = by_tag.get(tag)
        if pid is not None and (pid in trained or pid in unacked):
            continue
        if any(0 <= kill - answered_at <= BUFFER_WINDOW_S for kill in loop.server_kills):
            buffered_at_kill += 1
            continue
        where = "not in the queue" if pid is None else "acked but in no version"
        before = [e for e in loop.events if e[0] <= answered_at][-1:]
        after = [e for e in loop.events if e[0] > answered_at][:1]
        context = ", ".join(f"{what} {t - answered_at:+.2f}s" for t, what in before + after)
        problems.append(f"acknowledged pair [{tag}] {where} (events: {context or 'none'})")
    loop.buffered_at_kill = buffered_at_kill
    return problems


def run_trials(
    loop: LiveLoop,
    trials: int,
    seed: int,
    targets: list[str],
    log: Path,
    plan: list[tuple[str, str]] | None = None,
) -> dict:
    """Run ``trials`` kills (or the (target, moment) ``plan``) on a started loop, then drain
    and check; the summary."""
    rng = random.Random(seed)
    loop.start_background()
    results = []
    with open(log, "a") as out:
        for i in range(len(plan) if plan else trials):
            result = {"trial": i, **one_trial(loop, rng, targets, plan[i] if plan else None)}
            results.append(result)
            out.write(json.dumps(result) + "\n")
            out.flush()
    final = drain(loop)
    with open(log.with_name("answers.jsonl"), "w") as out:
        for tag, at, status, action in loop.answers:
            out.write(json.dumps({"tag": tag, "t": at, "status": status, "action": action}) + "\n")
    log.with_name("events.json").write_text(json.dumps(loop.events))
    answers = Counter(
        "acknowledged" if s == 200 and a == "rewritten" else f"status {s}"
        for _, _, s, a in loop.answers
    )
    violations = [p for r in results for p in r["problems"]] + final
    return {
        "trials": len(results),
        "by_target": dict(Counter(r["target"] for r in results)),
        "by_moment": dict(Counter(f"{r['target']}:{r['moment']}" for r in results)),
        "answers": dict(answers),
        "versions": len(loop.versions_seen),
        "pairs_trained": sum(len(v) for v in loop.versions_seen.values()),
        "lost_in_server_buffer_at_sigkill": loop.buffered_at_kill,
        "died_on_their_own": dict(loop.died_on_their_own),
        "violations": violations,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="server,trainer,redis")
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
            loop, options.trials, options.seed, options.targets.split(","), workdir / "trials.jsonl"
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
