"""Schema fuzzing: schemathesis against the live server's own ``/openapi.json``.

    .venv/bin/python benchmarks/fuzz_api.py [--model DIR] [--examples 120] [--seed 1]
        [--out var/reliability/fuzz]

Starts ``conscience serve`` (tiny demo model unless ``--model``; API key, admin key, an
adapter registry, every draft rewritten so the whole pipeline runs), then runs ``st run``
over every operation in four passes: no key, a wrong key, the API key, the admin key. Each
pass runs the coverage and fuzzing phases with schemathesis' checks (all but
``not_a_server_error`` and ``positive_data_acceptance``, see below) plus the two of
``benchmarks/fuzz_hooks.py``. Required, and checked here:

- no 5xx except a documented 503 ``engine_unavailable`` of a failed engine;
- no response slower than ``--request-timeout`` (a timeout fails the pass);
- no success without the key on any protected operation (enumerated from the app's routes:
  every route depending on ``require_api_key`` / ``require_admin_key``);
- after each pass ``/health``, ``/ready`` and a real chat completion answer normally.

``positive_data_acceptance`` is left out because the schema cannot express three semantic
rules (a user message with content; the served model names; the server's framework names);
the hooks steer half the bodies to satisfy them instead. Prints a JSON summary (cases per
pass and status class) and exits 1 if any pass failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

API_KEY, ADMIN_KEY, SERVED = "fuzz-api-key", "fuzz-admin-key", "tiny"
# Schemathesis' own checks we do not run, and why: see the module docstring.
EXCLUDED_CHECKS = "not_a_server_error,positive_data_acceptance"


def protected_operations() -> dict[str, list[str]]:
    """``{"api": [...], "admin": [...]}``: ``"METHOD /path"`` of every route that depends on
    a key check, read from the app object's routes (no hand list)."""
    from fastapi.routing import APIRoute

    from app.admin import require_admin_key
    from app.routes import require_api_key
    from app.server import create_app
    from app.settings import Settings

    def calls(dependant) -> set:
        found = {dependant.call}
        for sub in dependant.dependencies:
            found |= calls(sub)
        return found

    guarded: dict[str, list[str]] = {"api": [], "admin": []}
    for route in create_app(Settings()).routes:
        if not isinstance(route, APIRoute):
            continue
        needs = calls(route.dependant)
        for method in sorted(route.methods):
            name = f"{method} {route.path}"
            if require_api_key in needs:
                guarded["api"].append(name)
            if require_admin_key in needs:
                guarded["admin"].append(name)
    return guarded


def passes(guarded: dict[str, list[str]]) -> list[tuple[str, str | None, list[str]]]:
    """(name, Authorization header or None, operations that must not succeed)."""
    everything = guarded["api"] + guarded["admin"]
    return [
        ("no key", None, everything),
        ("wrong key", "Bearer not-a-key", everything),
        ("api key", f"Bearer {API_KEY}", guarded["admin"]),
        ("admin key", f"Bearer {ADMIN_KEY}", guarded["api"]),
    ]


def run_pass(
    base_url: str,
    name: str,
    header: str | None,
    protected: list[str],
    *,
    examples: int,
    seed: int,
    request_timeout: float,
    out: Path,
    frameworks: list[str],
    workers: int,
) -> dict:
    """One ``st run``; returns its counts, exit code and the tail of its output."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / "calls.jsonl"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "benchmarks.fuzz_hooks",
        "FUZZ_MODELS": f"{SERVED},{SERVED}@base",
        "FUZZ_FRAMEWORKS": ",".join(frameworks),
        "FUZZ_PROTECTED": json.dumps(protected),
        "FUZZ_LOG": str(log),
    }
    args = [
        str(Path(sys.executable).parent / "st"),
        f"--config-file={Path(__file__).with_name('schemathesis.toml')}",
        "run",
        f"{base_url}/openapi.json",
        "--phases=examples,coverage,fuzzing",
        f"--max-examples={examples}",
        f"--seed={seed}",
        "--checks=all",
        f"--exclude-checks={EXCLUDED_CHECKS}",
        f"--request-timeout={request_timeout}",
        f"--max-response-time={request_timeout}",
        f"--workers={workers}",
        "--no-color",
        "--suppress-health-check=all",
        "--continue-on-failure",
    ]
    if header:
        args.append(f"--header=Authorization: {header}")
    started = time.monotonic()
    done = subprocess.run(args, cwd=out, env=env, capture_output=True, text=True)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    (out / "st-output.txt").write_text(done.stdout + done.stderr)
    return {
        "pass": name,
        "exit_code": done.returncode,
        "cases": len(calls),
        "by_status": dict(sorted(Counter(f"{c['status'] // 100}xx" for c in calls).items())),
        "slowest_s": max((c["s"] for c in calls), default=0.0),
        "seconds": round(time.monotonic() - started, 1),
        "tail": (done.stdout + done.stderr)[-1500:],
    }


def answers_normally(base_url: str) -> None:
    """``/health``, ``/ready`` and one real chat completion succeed (AssertionError if not)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base_url, timeout=120, headers=headers) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200, client.get("/ready").text
        reply = client.post(
            "/v1/chat/completions",
            json={
                "model": SERVED,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 8,
            },
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["conscience"]["verdict"]


def fuzz(
    base_url: str, out: Path, *, examples: int, seed: int, request_timeout: float, workers: int
) -> dict:
    """Every pass against a running server started with ``API_KEY`` and ``ADMIN_KEY``."""
    guarded = protected_operations()
    from app.conscience.frameworks import FrameworkCatalog

    frameworks = sorted(FrameworkCatalog.load().names())
    results = []
    for name, header, protected in passes(guarded):
        result = run_pass(
            base_url,
            name,
            header,
            protected,
            examples=examples,
            seed=seed,
            request_timeout=request_timeout,
            out=out / name.replace(" ", "-"),
            frameworks=frameworks,
            workers=workers,
        )
        answers_normally(base_url)
        result["answers_after"] = True
        results.append(result)
    return {
        "cases": sum(r["cases"] for r in results),
        "failed_passes": [r["pass"] for r in results if r["exit_code"] != 0],
        "protected": guarded,
        "passes": results,
    }


def serve(model: Path, workdir: Path, port: int) -> subprocess.Popen:
    """``conscience serve`` for fuzzing; returns once ``/ready`` answers."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 2))
    args = [
        str(Path(sys.executable).parent / "conscience"),
        "serve",
        f"--model={model}",
        f"--served-model-name={SERVED}",
        f"--port={port}",
        "--max-model-len=512",
        f"--api-keys={API_KEY}",
        f"--admin-key={ADMIN_KEY}",
        f"--adapters-dir={workdir / 'adapters'}",
        f"--queue=sqlite:///{workdir / 'pairs.db'}",
        "--flag-threshold=0",
    ]
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="Model dir (default: the tiny demo model).")
    parser.add_argument("--examples", type=int, default=120, help="st --max-examples per phase.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="Concurrent requests (st -w).")
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "reliability" / "fuzz")
    options = parser.parse_args()

    from app.demo_model import write_demo_model
    from conscience.ports import free_port

    workdir = options.out / "server"  # server log, queue, registry: kept for inspection
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    model = options.model or write_demo_model(workdir / "tiny")
    port = free_port()
    server = serve(model, workdir, port)
    try:
        summary = fuzz(
            f"http://127.0.0.1:{port}",
            options.out,
            examples=options.examples,
            seed=options.seed,
            request_timeout=options.request_timeout,
            workers=options.workers,
        )
    finally:
        server.terminate()
        server.wait(60)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "passes"}, indent=2))
    for result in summary["passes"]:
        print({k: v for k, v in result.items() if k != "tail"})
    return 1 if summary["failed_passes"] else 0


if __name__ == "__main__":
    sys.exit(main())
