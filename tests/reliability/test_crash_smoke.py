"""A small crash-trial run in CI: SIGKILL the trainer between publish and ack, then Redis.

``benchmarks/crash_trials.py`` with a fixed plan on the session's engine (the in-process
server cannot be killed here; the published run kills it too): a private Redis with AOF
holds the queue, a real ``conscience train`` subprocess trains, tagged traffic flows.
"""

from __future__ import annotations

from benchmarks.crash_trials import ADMIN_KEY, LiveLoop, run_trials
from tests.app.queue.queue_helpers import free_port


def test_trainer_and_redis_sigkills_keep_every_invariant(serve, tmp_path, tiny_model_dir):
    loop = LiveLoop(tiny_model_dir, tmp_path, "", free_port())
    loop.start_redis()
    served = serve(
        model=str(tiny_model_dir),
        adapters_dir=tmp_path / "adapters",
        adapter_poll_s=0.5,
        admin_key=ADMIN_KEY,
        queue=loop.queue_url,
        flag_threshold=0.0,
    )
    loop.server_url = served.base_url
    loop.start_trainer()
    try:
        summary = run_trials(
            loop,
            0,
            seed=3,
            targets=[],
            log=tmp_path / "trials.jsonl",
            plan=[("trainer", "published"), ("redis", "random")],
        )
    finally:
        loop.stop_background()
        loop.trainer.kill()
        loop.kill_redis()
    assert summary["violations"] == [], summary
    assert summary["trials"] == 2 and summary["versions"] >= 1
    assert summary["answers"].get("acknowledged", 0) >= 8
    assert "(not reached" not in str(summary["by_moment"])
