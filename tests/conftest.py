"""Shared fixtures: one real vLLM engine per session on the tiny model, real uvicorn servers.

The engine lives on one background event loop; every test server (each with its own
settings) runs on that same loop, so they can share the engine like replicas would share a
process. Tests talk to the servers over loopback HTTP with the real ``openai`` client.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 2))

from tests.support import TINY_NAME


class LoopThread:
    """An asyncio loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = 300):
        future: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.demo_model import write_demo_model

    return write_demo_model(tmp_path_factory.mktemp("models") / TINY_NAME)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def engine(loop_thread: LoopThread, tiny_model_dir: Path):
    """The session's real vLLM engine (CPU build) on the tiny model."""
    from app.settings import Settings
    from app.vllm_engine import VllmEngine

    settings = Settings(model=str(tiny_model_dir), max_model_len=2048)

    async def start():
        return VllmEngine.start(settings, tiny_model_dir, TINY_NAME)

    eng = loop_thread.run(start())
    yield eng
    eng.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """A running test server."""

    def __init__(self, base_url: str, settings, app) -> None:
        self.base_url = base_url
        self.settings = settings
        self.app = app

    @property
    def state(self):
        return self.app.state.conscience


@pytest.fixture(scope="session")
def serve(loop_thread: LoopThread, engine, tmp_path_factory) -> Iterator[Callable[..., Served]]:
    """Start a real uvicorn server on the shared engine with the given settings overrides."""
    import uvicorn

    from app.server import create_app
    from app.settings import Settings

    running: list[tuple[uvicorn.Server, asyncio.Task]] = []

    def start(**overrides) -> Served:
        queue_dir = tmp_path_factory.mktemp("queue")
        overrides.setdefault("queue", f"sqlite:///{queue_dir / 'pairs.db'}")
        settings = Settings(port=free_port(), served_model_name=TINY_NAME, **overrides)
        app = create_app(settings, engine=engine)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
        )

        async def boot() -> asyncio.Task:
            task = asyncio.get_running_loop().create_task(server.serve())
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
            return task

        running.append((server, loop_thread.run(boot(), timeout=60)))
        return Served(f"http://127.0.0.1:{settings.port}", settings, app)

    yield start

    async def stop_all() -> None:
        for server, _ in running:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in running))

    loop_thread.run(stop_all(), timeout=60)


@pytest.fixture(scope="session")
def server(serve) -> Served:
    """The default server: mode rewrite, default framework, no auth."""
    return serve()


@pytest.fixture(scope="session")
def flagging_server(serve) -> Served:
    """A server whose threshold flags every draft, so rewrite paths run on the real engine."""
    return serve(flag_threshold=0.0)


@pytest.fixture
def make_client() -> Iterator[Callable[..., object]]:
    """Build openai clients for a server's base URL; all are closed after the test."""
    import openai

    made: list[openai.OpenAI] = []

    def make(base_url: str, api_key: str = "unused") -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0))
        return made[-1]

    yield make
    for built in made:
        built.close()


@pytest.fixture
def client(server: Served, make_client):
    return make_client(server.base_url)
