"""``conscience loop``: serve → flag → queue → train → swap, on one machine, round by round.

Starts a server and a trainer as subprocesses on one embedded queue and one adapter
registry, sends a scripted stream of chats through the real HTTP API, and prints per round:
requests served (and failed), flag rate, pairs queued, the adapter version the server drafts
with, and the policy's margin log p(chosen) - log p(rejected) under the base and under the
new adapter, on the pairs that version was trained on and on held-out flagged pairs (pairs
flagged under a framework the trainer does not consume). It ends by itself.

With ``--gate`` the server gates every version in shadow (docs/OPERATIONS.md): a round then
ends when a version goes live *or* is rejected, and the table says which. With
``--monitor-interval-s`` the drift monitor runs too; its rollbacks are printed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from app.adapter_registry import AdapterRegistry, RegistryError, base_model_identity
from app.queue import open_queue
from app.records import PairRecord
from conscience.eval.em.arms import ArmError, adapter_dir
from conscience.ports import free_port

ADMIN_KEY = "loop-admin"
TRAIN_FRAMEWORK = "introspective"
HELDOUT_FRAMEWORK = "three_laws"
console = Console(width=150)


class RoundRow(BaseModel):
    """One line of the loop's table."""

    round: int
    requests: int
    failed: int
    flag_rate: float
    pairs_queued: int
    adapter: str | None
    gate: str | None = None
    trained_margin_base: float | None = None
    trained_margin_adapter: float | None = None
    heldout_margin_base: float | None = None
    heldout_margin_adapter: float | None = None


def _spawn(args: list[str], log: Path, stack: ExitStack) -> subprocess.Popen:
    handle = stack.enter_context(log.open("w"))
    proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy())

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()

    stack.callback(stop)
    return proc


class Traffic:
    """Sends chats with bounded concurrency and counts the outcome."""

    def __init__(self, base_url: str, model: str, prompts: list[str], max_tokens: int):
        self.base_url, self.model, self.prompts = base_url, model, prompts
        self.max_tokens = max_tokens
        self.sent = self.failed = self.flagged = 0
        self._next = 0
        self._lock = threading.Lock()

    def _prompt(self) -> str:
        with self._lock:
            prompt = self.prompts[self._next % len(self.prompts)]
            self._next += 1
            return prompt

    def one(self, framework: str = TRAIN_FRAMEWORK) -> dict | None:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": self._prompt()}],
            "max_tokens": self.max_tokens,
            "conscience": {"framework": framework, "mode": "rewrite"},
        }
        try:
            response = httpx.post(f"{self.base_url}/v1/chat/completions", json=body, timeout=600)
            response.raise_for_status()
            report = response.json()["conscience"]
        except httpx.HTTPError:
            with self._lock:
                self.sent += 1
                self.failed += 1
            return None
        with self._lock:
            self.sent += 1
            self.flagged += report["action"] == "rewritten"
        return report

    def run(self, n: int, concurrency: int, until: threading.Event | None = None) -> None:
        """Send ``n`` chats, then keep going until ``until`` is set (load across swaps)."""
        quota = iter(range(n))

        def worker() -> None:
            while next(quota, None) is not None or (until is not None and not until.is_set()):
                self.one()

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def margin(base_url: str, model: str, pairs: list[PairRecord]) -> float | None:
    """Mean log p(chosen) - log p(rejected) under ``model`` (via /v1/conscience/score)."""
    if not pairs:
        return None
    total = 0.0
    for pair in pairs:
        body = {
            "model": model,
            "messages": [m.model_dump() for m in pair.prompt],
            "answers": [pair.chosen[-1].content, pair.rejected[-1].content],
        }
        response = httpx.post(f"{base_url}/v1/conscience/score", json=body, timeout=120)
        response.raise_for_status()
        chosen, rejected = (s["logprob"] for s in response.json()["scores"])
        total += chosen - rejected
    return total / len(pairs)


def wait_until(predicate, limit_s: float, what: str, proc: subprocess.Popen | None = None):
    """Poll ``predicate`` until it returns a truthy value."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


class LoopRun:
    """One closed-loop run in ``workdir``."""

    def __init__(self, model: Path, workdir: Path, prompts: list[str], options: dict):
        self.model, self.workdir, self.prompts, self.options = model, workdir, prompts, options
        self.queue_url = f"sqlite:///{workdir / 'pairs.db'}"
        self.registry = AdapterRegistry(workdir / "adapters")
        self.base_url = f"http://127.0.0.1:{free_port()}"
        self.name = "policy"
        self.rows: list[RoundRow] = []

    def server_args(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "conscience.cli",
            "serve",
            "--model",
            str(self.model),
            "--served-model-name",
            self.name,
            "--port",
            self.base_url.rsplit(":", 1)[1],
            "--queue",
            self.queue_url,
            "--adapters-dir",
            str(self.registry.root),
            "--adapter-poll-s",
            "0.5",
            "--admin-key",
            ADMIN_KEY,
            "--log-level",
            "warning",
        ]
        if self.options["flag_threshold"] is not None:
            args += ["--flag-threshold", str(self.options["flag_threshold"])]
        if self.options.get("gate"):
            args.append("--gate")
        if self.options.get("monitor_interval_s") is not None:
            args += ["--monitor-interval-s", str(self.options["monitor_interval_s"])]
        return args

    def trainer_args(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "trainer",
            "--queue",
            self.queue_url,
            "--adapters",
            str(self.registry.root),
            "--model",
            str(self.model),
            "--frameworks",
            TRAIN_FRAMEWORK,
            "--min-pairs",
            str(self.options["min_pairs"]),
            "--poll-interval-s",
            "0.5",
            "--lease-s",
            "900",
            *self.options["trainer_args"],
        ]

    def admin(self, action: str | None = None, body: dict | None = None) -> dict:
        """GET the adapter status, or POST an admin action (pin, follow)."""
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        url = f"{self.base_url}/admin/adapters" + (f"/{action}" if action else "")
        if action is None:
            return httpx.get(url, headers=headers, timeout=10).json()
        response = httpx.post(url, headers=headers, json=body, timeout=120)
        response.raise_for_status()
        return response.json()

    def pairs(self, framework: str, ids: set[str] | None = None) -> list[PairRecord]:
        with open_queue(self.queue_url) as queue:
            found = [r for r in queue.records(include_acked=True) if r.framework == framework]
        return [r for r in found if ids is None or r.id in ids]

    def run(self) -> list[RoundRow]:
        with ExitStack() as stack:
            server = _spawn(self.server_args(), self.workdir / "server.log", stack)
            wait_until(self._ready, 900, "the server to be ready", server)
            held, train = self.prompts[::4], [p for i, p in enumerate(self.prompts) if i % 4]
            heldout = Traffic(self.base_url, self.name, held, self.options["max_tokens"])
            for _ in held:
                heldout.one(HELDOUT_FRAMEWORK)
            traffic = Traffic(self.base_url, self.name, train, self.options["max_tokens"])
            trainer = _spawn(self.trainer_args(), self.workdir / "trainer.log", stack)
            for number in range(1, self.options["rounds"] + 1):
                self.rows.append(self._round(number, traffic, trainer))
                console.print(_table(self.rows[-1:]))
            for event in self.admin().get("rollbacks", []):
                console.print(f"monitor rolled back {event['version']} -> {event['to']}: {event}")
        return self.rows

    def _ready(self) -> bool:
        return httpx.get(f"{self.base_url}/ready", timeout=60).status_code == 200

    def _live_version(self, before: str | None) -> str | None:
        manifest = self.registry.read_manifest()
        target = manifest.current if manifest else None
        if target is None or target == before:
            return None
        return target if self.admin().get("current") == target else None

    def _outcome(self, before: str | None) -> tuple[str, str | None] | None:
        """A version the gate rejected, or (with a gate) the one the server now serves.

        Without a gate the server serves the manifest's ``current`` within a poll; with one
        the trainer may publish faster than versions are gated, so a version that went live
        need not be the newest."""
        manifest = self.registry.read_manifest()
        reported = {row.adapter for row in self.rows} | {before}
        for entry in manifest.versions if manifest else []:
            if entry.blocked and entry.version not in reported:
                return entry.version, entry.gate["verdict"]
        if not self.options.get("gate"):
            live = self._live_version(before)
            return (live, None) if live else None
        live = self.admin().get("current")
        if live is None or live in reported:
            return None
        entry = manifest.entry(live) if manifest else None
        return live, (entry.gate or {}).get("verdict") if entry else None

    def _round(self, number: int, traffic: Traffic, trainer: subprocess.Popen) -> RoundRow:
        manifest = self.registry.read_manifest()
        before = manifest.current if manifest else None
        if self.options.get("gate"):
            before = self.admin().get("current")  # the manifest may be ahead of the gate
        sent, failed, flagged = traffic.sent, traffic.failed, traffic.flagged
        live = threading.Event()
        load = threading.Thread(
            target=traffic.run,
            args=(self.options["per_round"], self.options["concurrency"], live),
        )
        load.start()
        try:
            version, verdict = wait_until(
                lambda: self._outcome(before),
                self.options["round_timeout_s"],
                "a new adapter version to go live",
                trainer,
            )
        finally:
            live.set()
            load.join()
        requests = traffic.sent - sent
        row = RoundRow(
            round=number,
            requests=requests,
            failed=traffic.failed - failed,
            flag_rate=(traffic.flagged - flagged) / max(requests, 1),
            pairs_queued=traffic.flagged - flagged,
            adapter=version,
            gate=verdict,
        )
        entry = self.registry.read_manifest().entry(version)
        if entry.blocked:
            return row  # rejected by the gate: never served, nothing to measure
        trained = self.pairs(TRAIN_FRAMEWORK, set(entry.pair_ids))[:8]
        held = self.pairs(HELDOUT_FRAMEWORK)[:8]
        base, tuned = f"{self.name}@base", f"{self.name}@{version}"
        # The trainer keeps publishing; pin this version while it is measured.
        self.admin("pin", {"version": version})
        try:
            row.trained_margin_base = margin(self.base_url, base, trained)
            row.trained_margin_adapter = margin(self.base_url, tuned, trained)
            row.heldout_margin_base = margin(self.base_url, base, held)
            row.heldout_margin_adapter = margin(self.base_url, tuned, held)
        finally:
            self.admin("follow")
        return row


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _table(rows: list[RoundRow]) -> Table:
    table = Table(title=f"closed loop: round {rows[0].round}" if len(rows) == 1 else "closed loop")
    for column in (
        "round",
        "requests",
        "failed",
        "flag rate",
        "pairs",
        "adapter",
        "gate",
        "margin trained: base → adapter",
        "margin held-out: base → adapter",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row.round),
            str(row.requests),
            str(row.failed),
            f"{row.flag_rate:.0%}",
            str(row.pairs_queued),
            row.adapter or "-",
            row.gate or "-",
            f"{_fmt(row.trained_margin_base)} → {_fmt(row.trained_margin_adapter)}",
            f"{_fmt(row.heldout_margin_base)} → {_fmt(row.heldout_margin_adapter)}",
        )
    return table


def seed_registry(registry: AdapterRegistry, adapter: Path, model: Path) -> str:
    """Publish ``adapter`` as the first version of an empty ``registry``; its version name."""
    manifest = registry.read_manifest()
    if manifest is not None and manifest.versions:
        raise RegistryError(f"{registry.root} already holds versions: start from an empty workdir")
    source = adapter_dir(adapter)
    registry.root.mkdir(parents=True, exist_ok=True)
    version = registry.next_version()
    staging = registry.staging_dir(version)
    shutil.copytree(source, staging)
    metrics = {"started_from": str(source)}
    registry.publish(staging, version, None, base_model_identity(model), [], metrics)
    return version


DEFAULT_PROMPTS = Path(__file__).resolve().parent.parent / "examples" / "loop" / "prompts.txt"


def loop(
    model: Path | None = typer.Option(None, help="Base model dir. Default: a tiny demo model."),
    prompts: Path = typer.Option(DEFAULT_PROMPTS, help="Chat prompts, one per line."),
    rounds: int = typer.Option(2, min=1, help="Adapter versions to train and swap in."),
    per_round: int = typer.Option(12, min=1, help="Chats sent per round (at least)."),
    concurrency: int = typer.Option(2, min=1, help="Chats in flight at once."),
    max_tokens: int = typer.Option(32, min=1, help="max_tokens of each chat."),
    min_pairs: int = typer.Option(4, min=1, help="Pairs the trainer waits for per round."),
    flag_threshold: float | None = typer.Option(
        None, help="Server --flag-threshold. Default: the judge's own verdict (demo model: 0)."
    ),
    learning_rate: float = typer.Option(1e-3, help="Trainer learning rate."),
    epochs: float = typer.Option(2.0, help="Trainer passes over each round's pairs."),
    round_timeout_s: float = typer.Option(900, help="Give up on a round after this long."),
    gate: bool = typer.Option(
        False, "--gate/--no-gate", help="Server --gate: shadow-evaluate versions before serving."
    ),
    monitor_interval_s: float | None = typer.Option(
        None, help="Server --monitor-interval-s: canary runs with automatic rollback."
    ),
    workdir: Path | None = typer.Option(None, help="Where queue, adapters and logs go."),
    start_adapter: Path | None = typer.Option(
        None,
        help="Serve (and train on from) this adapter first: a peft directory or an adapter "
        "registry's current version, published as the workdir registry's first version.",
    ),
) -> None:
    """Run serve → flag → queue → train → swap on this machine and print the round table."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="conscience-loop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if model is None:
        from app.demo_model import write_demo_model

        model = write_demo_model(workdir / "model")
        if flag_threshold is None:
            console.print("demo model: its verdicts are noise, so every draft is flagged (0.0)")
            flag_threshold = 0.0
    lines = [p.strip() for p in prompts.read_text().splitlines() if p.strip()]
    if start_adapter is not None:
        try:
            seed_registry(AdapterRegistry(workdir / "adapters"), start_adapter, model)
        except (ArmError, RegistryError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None
    options = {
        "rounds": rounds,
        "per_round": per_round,
        "concurrency": concurrency,
        "max_tokens": max_tokens,
        "min_pairs": min_pairs,
        "flag_threshold": flag_threshold,
        "round_timeout_s": round_timeout_s,
        "gate": gate,
        "monitor_interval_s": monitor_interval_s,
        "trainer_args": ["--learning-rate", str(learning_rate), "--epochs", str(epochs)],
    }
    console.print(f"workdir: {workdir} (server.log, trainer.log, pairs.db, adapters/)")
    rows = LoopRun(model.resolve(), workdir, lines, options).run()
    (workdir / "loop.json").write_text(json.dumps([r.model_dump() for r in rows], indent=2))
    console.print(_table(rows))
