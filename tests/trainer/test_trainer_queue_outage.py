"""A waiting trainer outlives a Redis restart: it retries its polls, then trains what arrives."""

from __future__ import annotations

from app.queue import open_queue
from tests.app.queue.queue_helpers import PrivateRedis
from tests.trainer.trainer_helpers import TrainerProcess, make_pairs, trainer_options


def test_trainer_waits_out_a_redis_restart(demo_model, tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    options = trainer_options(demo_model, tmp_path, queue=redis.url, heldout_fraction="0")
    trainer = TrainerProcess(options, tmp_path / "trainer.err")
    try:
        trainer.wait_line("stage=waiting", timeout=180)
        redis.kill()
        trainer.wait_line("stage=queue-unavailable", timeout=60)  # and it is still running
        redis.start()
        with open_queue(redis.url) as queue:
            queue.produce(make_pairs(8))
        trainer.wait_line("stage=acked version=v000001", timeout=240)
    finally:
        trainer.kill()
        redis.kill()
