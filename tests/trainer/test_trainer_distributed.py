"""Two CPU processes under ``accelerate launch``: rank 0 leases and publishes, both train."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from app.adapter_registry import AdapterRegistry
from app.queue import open_queue
from tests.trainer.trainer_helpers import cli_args, make_pairs, trainer_options

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_one_round(demo_model, tmp_path):
    options = trainer_options(demo_model, tmp_path, once=True)
    pairs = make_pairs(24)
    with open_queue(options["queue"]) as queue:
        queue.produce(pairs)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes=2", "--num_machines=1", "--mixed_precision=no"]
    launch += ["--dynamo_backend=no", f"--main_process_port={free_port()}"]
    done = subprocess.run(
        [*launch, "-m", "trainer", *cli_args(options)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "process=0/2" in done.stdout and "process=1/2" in done.stdout
    # 18 training pairs, 8 per process and step, 2 processes, 2 epochs: 4 steps (not 6).
    assert "| 4/4 [" in done.stderr
    manifest = AdapterRegistry(options["adapters"]).read_manifest()
    assert manifest.current == "v000001"
    assert sorted(manifest.entry("v000001").pair_ids) == sorted(r.id for r in pairs)
    with open_queue(options["queue"]) as queue:
        assert (queue.stats().acked, queue.stats().depth) == (24, 0)
