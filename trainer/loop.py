"""The consume loop: lease pairs, train a round, publish a version, ack; repeat.

Crash semantics (one trainer per queue consumer name and registry):

- crash before publish: nothing is acked; a restart under the same consumer name releases
  the dead run's leases at once and trains them; a trainer of another name waits for them
  to expire (``lease_s``);
- crash after publish, before ack: the manifest lists the pairs the version consumed; on
  restart they are acked at once, and any that come back later are acked, never retrained;
- the manifest is replaced atomically after the version dir is complete, so it always
  points at a complete version.

Multi-process (``accelerate launch``): only the main process talks to the queue and the
registry; it broadcasts each round's records to the others, and all of them train.
The loop logs one ``stage=...`` line per step (leased, staged, published, acked) for operators.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from app.adapter_registry import AdapterRegistry, BaseModelIdentity, base_model_identity
from app.queue import PairFilter, PairQueue, QueueError, open_queue
from app.records import PairRecord
from trainer import metrics as prom
from trainer.config import TrainerConfig
from trainer.data import ReplayRow, RoundData, load_replay, prepare_round, sample_replay

log = logging.getLogger("conscience.trainer")


class PairSource:
    """Leases rounds of pairs from the queue for the main process.

    Leases only when the queue holds at least ``min_pairs`` ready records (so an idle trainer
    holds no leases), and keeps a short-filled round for later polls, until half its lease
    is gone. Pairs a published version already consumed are acked, never handed out.
    """

    def __init__(self, queue: PairQueue, registry: AdapterRegistry, config: TrainerConfig) -> None:
        self.queue, self.registry, self.config = queue, registry, config
        self.filters = PairFilter(
            frameworks=config.frameworks,
            min_score=config.min_score,
            approved_only=config.require_approval,
        )
        self._pending: dict[str, tuple[PairRecord, float]] = {}

    def recover(self) -> None:
        """Undo what a dead predecessor of the same name left: ack the pairs of the current
        version (it may have died before acking), then release its other leases at once."""
        manifest = self.registry.read_manifest()
        entry = manifest.entry(manifest.current) if manifest and manifest.current else None
        if entry and entry.pair_ids:
            self.queue.ack(entry.pair_ids)
            log.info("stage=recovered version=%s acked=%d", entry.version, len(entry.pair_ids))
        released = self.queue.requeue(self.config.consumer)
        prom.RECLAIMED.inc(released)
        if released:
            log.info("stage=reclaimed consumer=%s leases=%d", self.config.consumer, released)

    def next_round(self) -> list[PairRecord] | None:
        """A round's records; None when fewer than ``min_pairs`` are available now."""
        cutoff = time.monotonic() - self.config.lease_s / 2
        self._pending = {k: v for k, v in self._pending.items() if v[1] > cutoff}
        depth = self.queue.stats().depth
        prom.QUEUE_DEPTH.set(depth)
        if depth + len(self._pending) >= self.config.min_pairs:
            self._lease(self.config.round_size - len(self._pending))
        if len(self._pending) < self.config.min_pairs:
            return None
        records = [record for record, _ in self._pending.values()]
        self._pending.clear()
        return records

    def _lease(self, n: int) -> None:
        if n <= 0:
            return
        leased = self.queue.lease(
            n, self.config.lease_s, consumer=self.config.consumer, filters=self.filters
        )
        manifest = self.registry.read_manifest()
        done = manifest.consumed_ids() if manifest else set()
        stale = [item.record.id for item in leased if item.record.id in done]
        prom.LEASED.inc(len(leased))
        prom.PAIRS.labels("deduped").inc(len(stale))
        if stale:
            self.queue.ack(stale)
            log.info("stage=deduped acked=%d (already trained)", len(stale))
        now = time.monotonic()
        for item in leased:
            if item.record.id not in done:
                self._pending[item.record.id] = (item.record, now)
        if leased:
            log.info(
                "stage=leased pairs=%d pending=%d", len(leased) - len(stale), len(self._pending)
            )


def _parent(registry: AdapterRegistry, base: BaseModelIdentity) -> str | None:
    """The version to continue from: the current one, if trained on this base."""
    manifest = registry.read_manifest()
    entry = manifest.entry(manifest.current) if manifest and manifest.current else None
    if entry is None:
        return None
    if entry.base_model.config_hash != base.config_hash:
        log.warning("current %s was trained on another base model; starting fresh", entry.version)
        return None
    return entry.version


def summary(version: str, metrics: dict[str, Any]) -> str:
    """The one-line report of a round."""

    def arrow(key: str, fmt: str) -> str:
        before, after = metrics.get(f"{key}_before"), metrics.get(f"{key}_after")
        return "n/a" if before is None else f"{before:{fmt}}→{after:{fmt}}"

    reward_accuracy = metrics.get("reward_accuracy")
    return (
        f"round {version}: {metrics['pairs_trained']} pairs (+{metrics['pairs_heldout']} held out,"
        f" {metrics['pairs_replay']} replay, {metrics['skipped_long']} too long,"
        f" {metrics['skipped_schema']} unknown schema,"
        f" {metrics['skipped_unchanged']} unchanged) loss {metrics['loss']:.3f}"
        f" reward-accuracy {'n/a' if reward_accuracy is None else f'{reward_accuracy:.2f}'}"
        f" accuracy {arrow('train_accuracy', '.2f')} margin {arrow('train_margin', '+.2f')}"
        f" held-out margin {arrow('heldout_margin', '+.2f')} in {metrics['seconds']:.1f}s"
    )


class Round:
    """What the main process broadcasts: the records plus where the round writes."""

    def __init__(self, records: list[PairRecord], version: str, parent: str | None) -> None:
        self.records, self.version, self.parent = records, version, parent

    def to_wire(self) -> dict[str, Any]:
        """A picklable form for ``broadcast_object_list``."""
        dumps = [r.model_dump(mode="json") for r in self.records]
        return {"records": dumps, "version": self.version, "parent": self.parent}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Round:
        """Inverse of ``to_wire``."""
        records = [PairRecord.model_validate(r) for r in wire["records"]]
        return cls(records, wire["version"], wire["parent"])


def _round_data(config: TrainerConfig, records: list[PairRecord], replay: list[ReplayRow]):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    data = prepare_round(
        records, tokenizer, max_length=config.max_length, heldout_fraction=config.heldout_fraction
    )
    n_replay = round(config.replay_ratio * len(data.train)) if data.train else 0
    data.replay = sample_replay(
        replay, n_replay, tokenizer, max_length=config.max_length, seed=config.seed
    )
    return data


def _counts(data: RoundData) -> dict[str, int]:
    return {
        "pairs_trained": len(data.train),
        "pairs_heldout": len(data.heldout),
        "pairs_replay": len(data.replay),
        "skipped_long": len(data.skipped_long),
        "skipped_schema": len(data.skipped_schema),
        "skipped_unchanged": len(data.skipped_unchanged),
    }


class Publisher:
    """The main process's side of the loop: queue, registry, polling and publishing."""

    def __init__(self, config: TrainerConfig, base: BaseModelIdentity) -> None:
        self.config, self.base = config, base
        self.registry = AdapterRegistry(config.adapters)
        for stale in self.registry.clean_staging():
            log.info("stage=cleaned staging=%s", stale.name)
        self.queue = open_queue(config.queue)
        self.source = PairSource(self.queue, self.registry, config)
        self.source.recover()
        self._waiting = False

    def poll(self) -> dict[str, Any]:
        """The next message for all processes: a round, ``wait`` (after sleeping) or ``stop``.

        A queue that cannot be reached (Redis restarting) is waited for, not fatal: nothing is
        held between polls but leases, which expire or are reclaimed."""
        try:
            records = self.source.next_round()
        except QueueError as exc:
            if self.config.once:
                raise
            log.warning(
                "stage=queue-unavailable retrying in %.1fs: %s", self.config.poll_interval_s, exc
            )
            time.sleep(self.config.poll_interval_s)
            return {"wait": True}
        if records is not None:
            self._waiting = False
            parent = _parent(self.registry, self.base)
            return Round(records, self.registry.next_version(), parent).to_wire()
        if self.config.once:
            log.info("stage=idle fewer than %d pairs queued; exiting", self.config.min_pairs)
            return {"stop": True}
        if not self._waiting:  # say it once per idle spell, not once per poll
            log.info("stage=waiting for %d pairs", self.config.min_pairs)
        self._waiting = True
        time.sleep(self.config.poll_interval_s)
        return {"wait": True}

    def finish(self, rnd: Round, data: RoundData, metrics: dict[str, Any]) -> None:
        """Publish the staged version, then ack its pairs and prune old versions."""
        consumed = data.consumed_ids()
        staging = self.registry.staging_dir(rnd.version)
        log.info("stage=staged version=%s dir=%s", rnd.version, staging)
        self.registry.publish(staging, rnd.version, rnd.parent, self.base, consumed, metrics)
        log.info("stage=published version=%s", rnd.version)
        self.queue.ack(consumed)
        log.info("stage=acked version=%s pairs=%d", rnd.version, len(consumed))
        prom.round_counts(metrics)
        prom.published(rnd.version, metrics, time.time())
        for version in self.registry.prune(self.config.keep_versions):
            log.info("stage=pruned version=%s", version)
        log.info(summary(rnd.version, metrics))

    def drop(self, data: RoundData) -> None:
        """Ack a round that had nothing trainable (every record skipped)."""
        self.queue.ack(data.consumed_ids())
        log.info("stage=acked pairs=%d (all skipped) %s", len(data.consumed_ids()), _counts(data))
        prom.ROUNDS.labels("dropped").inc()
        prom.round_counts(_counts(data))

    def close(self) -> None:
        """Close the queue."""
        self.queue.close()


def _share(state: Any, message: dict[str, Any] | None) -> dict[str, Any]:
    """Broadcast the main process's message to every process."""
    if state.num_processes == 1:
        assert message is not None
        return message
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([message], from_process=0)[0]


def run(config: TrainerConfig) -> int:
    """Consume the queue until stopped (one round at most with ``once``); return 0."""
    import torch
    from accelerate import PartialState

    if config.model is None:
        raise ValueError("a base model directory is required (--model)")
    state = PartialState(cpu=not torch.cuda.is_available())
    log.info("stage=started process=%d/%d", state.process_index, state.num_processes)
    replay = load_replay(config.replay_file) if config.replay_file else []
    base = base_model_identity(config.model, config.model_name)
    registry = AdapterRegistry(config.adapters)
    exporter = None
    if config.metrics_port is not None and state.is_main_process:
        exporter = prom.serve(config.metrics_port)
        log.info("stage=metrics port=%d", exporter.server_port)
    publisher = Publisher(config, base) if state.is_main_process else None
    try:
        while True:
            message = _share(state, publisher.poll() if publisher else None)
            if "stop" in message:
                return 0
            if "wait" in message:
                continue
            _run_round(config, Round.from_wire(message), replay, registry, publisher)
            if config.once:
                return 0
    finally:
        if publisher:
            publisher.close()
        if exporter:
            exporter.shutdown()
            exporter.server_close()


def _run_round(
    config: TrainerConfig,
    rnd: Round,
    replay: list[ReplayRow],
    registry: AdapterRegistry,
    publisher: Publisher | None,
) -> None:
    from trainer.round import train_round

    started = time.monotonic()
    data = _round_data(config, rnd.records, replay)
    if not data.train:
        if publisher:
            publisher.drop(data)
        return
    parent_dir = registry.version_dir(rnd.parent) if rnd.parent else None
    staging = registry.staging_dir(rnd.version) if publisher else None
    metrics = train_round(config, data, parent_dir, staging)
    if publisher:
        metrics.update(_counts(data), seconds=round(time.monotonic() - started, 3))
        publisher.finish(rnd, data, metrics)
