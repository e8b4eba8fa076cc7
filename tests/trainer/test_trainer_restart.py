"""A SIGKILLed ``conscience train`` restarted under the same name trains its leased pairs at once.

Real processes on a real SQLite file and a real Redis stream: the first trainer is killed
mid-training with 30-minute leases held; a trainer of another name finds nothing to do (the
leases are live); ``conscience train --once`` under the first name releases them, trains
them and acks them, in far less than the lease.
"""

from __future__ import annotations

import queue as queue_module
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapter_registry import AdapterRegistry
from app.queue import open_queue
from tests.app.queue.queue_helpers import REDIS_URL, delete_stream_keys
from tests.trainer.trainer_helpers import ROOT, TrainerProcess, cli_args, make_pairs
from tests.trainer.trainer_helpers import trainer_options as fast_options
from trainer.config import TrainerConfig
from trainer.loop import run

LEASE_S = 1800.0
CONSCIENCE = Path(sys.executable).parent / "conscience"


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'q.db'}"
        return
    stream = f"test:{uuid.uuid4().hex}"
    yield f"{REDIS_URL}?stream={stream}"
    delete_stream_keys(stream)


class ConscienceTrain(TrainerProcess):
    """``conscience train`` (the installed command) in a subprocess, stdout pumped."""

    def __init__(self, options: dict, stderr: Path) -> None:
        self.stderr = stderr
        with open(stderr, "w") as err:
            self.proc = subprocess.Popen(
                [str(CONSCIENCE), "train", *cli_args(options)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.lines: queue_module.Queue[str] = queue_module.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()


def conscience_train(options: dict, log: Path, timeout: float = 180) -> str:
    """Run ``conscience train`` to completion; return its stdout (fail on non-zero exit)."""
    with open(log, "w") as err:
        done = subprocess.run(
            [str(CONSCIENCE), "train", *cli_args(options)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=timeout,
        )
    assert done.returncode == 0, log.read_text()[-2000:]
    return done.stdout


def test_restarted_trainer_reclaims_its_leases_at_once(demo_model, tmp_path, queue_url):
    options = fast_options(demo_model, tmp_path, queue=queue_url, lease_s=LEASE_S, once=True)
    pairs = make_pairs(12)
    with open_queue(queue_url) as queue:
        queue.produce(pairs)
        first = ConscienceTrain({**options, "epochs": 50.0}, tmp_path / "first.txt")
        try:
            first.wait_training(timeout=120)
        finally:
            first.kill()  # SIGKILL mid-round: 12 live 30-minute leases, nothing published
        stats = queue.stats()
        assert (stats.depth, stats.leased, stats.acked) == (0, 12, 0)

        # Another consumer name must still wait for expiry: it finds nothing to do.
        assert run(TrainerConfig(**{**options, "consumer": "other"})) == 0
        assert AdapterRegistry(options["adapters"]).read_manifest() is None
        assert (queue.stats().leased, queue.stats().acked) == (12, 0)

        started = time.monotonic()
        out = conscience_train(options, tmp_path / "restart.txt")
        elapsed = time.monotonic() - started
        assert "stage=reclaimed consumer=trainer leases=12" in out
        assert "stage=published version=v000001" in out
        assert elapsed < LEASE_S / 10
        stats = queue.stats()
        assert (stats.depth, stats.leased, stats.acked) == (0, 0, 12)
    manifest = AdapterRegistry(options["adapters"]).read_manifest()
    assert manifest.current == "v000001"
    assert sorted(manifest.entry("v000001").pair_ids) == sorted(p.id for p in pairs)
