"""Start and stop the servers under test: plain vLLM's OpenAI server and ``conscience serve``.

Both get the same engine settings (``EngineConfig``). Each runs as its own subprocess in its
own process group (vLLM spawns engine processes), logs to a file, and is always stopped,
group and all, when its ``running`` block ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.allocator import Allocator, preload_env
from app.conscience.labels import MAX_SCORED_TOKENS
from app.settings import Settings
from conscience.ports import free_port

HOST = "127.0.0.1"
STOP_GRACE_S = 30.0
POLL_S = 0.5
_DEFAULTS = Settings.model_fields


class ServerError(RuntimeError):
    """A server exited or never became ready; the message names its log."""


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings shared by every server in one benchmark."""

    model_dir: Path
    served_name: str
    max_model_len: int = 2048
    dtype: str = "auto"
    max_lora_rank: int = _DEFAULTS["max_lora_rank"].default
    max_loras: int = _DEFAULTS["max_loras"].default
    threads: int = os.cpu_count() or 1
    kv_cache_gib: int = 1
    block_size: int = 32

    def env(self) -> dict[str, str]:
        """The children's environment: ours minus ``CONSCIENCE_*``, plus the engine knobs.

        tcmalloc is preloaded for both servers when installed (``conscience serve`` would
        preload it for itself only), so they run on the same allocator.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSCIENCE_")}
        env["OMP_NUM_THREADS"] = str(self.threads)
        env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)
        return preload_env(Allocator.auto, env) or env

    def common_args(self) -> list[str]:
        """Engine options both servers take with the same spelling (``auto`` dtype resolved
        as ``conscience serve`` resolves it, so plain vLLM runs the same one)."""
        from app.vllm_engine import native_dtype

        return [
            "--model", str(self.model_dir),
            "--served-model-name", self.served_name,
            "--host", HOST,
            "--dtype", native_dtype(self.dtype),
            "--max-model-len", str(self.max_model_len),
            "--enforce-eager",
            "--enable-prefix-caching",
            "--block-size", str(self.block_size),
        ]  # fmt: skip

    def lora_args(self) -> list[str]:
        return ["--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(self.max_loras)]


@dataclass(frozen=True)
class ServerSpec:
    """One server process: its command line, environment and where it answers."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    port: int
    ready_path: str

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def vllm_server(config: EngineConfig, *, lora: bool) -> ServerSpec:
    """Plain vLLM (``python -m vllm.entrypoints.openai.api_server``; ``vllm serve`` crashes
    on vllm-cpu 0.32.0). ``--generation-config vllm``: no model sampling defaults, like ours."""
    port = free_port()
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        *config.common_args(),
        "--port", str(port),
        "--max-logprobs", str(MAX_SCORED_TOKENS),
        "--generation-config", "vllm",
        "--disable-uvicorn-access-log",
        "--uvicorn-log-level", "warning",
    ]  # fmt: skip
    argv += ["--enable-lora", *config.lora_args()] if lora else ["--no-enable-lora"]
    name = "vllm" if lora else "vllm-nolora"
    return ServerSpec(name, argv, config.env(), port, "/health")


def conscience_server(
    config: EngineConfig, *, layout: str, flag_threshold: float, queue_path: Path
) -> ServerSpec:
    """``conscience serve`` (LoRA always enabled) with a fixed layout and flag threshold."""
    port = free_port()
    argv = [
        sys.executable, "-m", "conscience.cli", "serve",
        *config.common_args(),
        *config.lora_args(),
        "--port", str(port),
        "--mode", "rewrite",
        "--review-layout", layout,
        "--flag-threshold", str(flag_threshold),
        "--queue", f"sqlite:///{queue_path}",
        "--log-level", "warning",
    ]  # fmt: skip
    name = f"conscience-{layout}-t{flag_threshold:g}"
    return ServerSpec(name, argv, config.env(), port, "/ready")


@contextmanager
def running(spec: ServerSpec, log_path: Path, timeout_s: float) -> Iterator[str]:
    """Start ``spec``, wait until it is ready, yield its base URL; always stop it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=spec.env,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, spec, log_path, timeout_s)
            yield spec.base_url
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen, spec: ServerSpec, log_path: Path, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerError(
                    f"{spec.name} exited with status {proc.returncode} before it was ready; "
                    f"log: {log_path}\n{_tail(log_path)}"
                )
            try:
                if client.get(spec.base_url + spec.ready_path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(POLL_S)
    raise ServerError(f"{spec.name} was not ready after {timeout_s:.0f} s; log: {log_path}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it after a grace period, reap."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # stragglers of the group, if any


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
