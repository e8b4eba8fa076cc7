"""The fine-tuning loop: SFT on the task, plus the conscience's DPO term when enabled.

Step ``s`` trains on a batch of task rows (NLL of their answers). With ``alignment:
conscience``, every ``alignment_every`` steps (step 0 included, so the first drafts come
from the base model) the current adapter drafts answers, the frozen base reviews and
rewrites them, and from then on each step adds ``alignment_weight`` x the DPO term on pairs
drawn from every round so far. The result is published into the adapter registry.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from conscience.finetune import checkpoint
from conscience.finetune.config import FinetuneConfig
from conscience.finetune.data import open_questions, sft_example, split_task, write_split
from conscience.finetune.losses import dpo_term, sft_loss
from trainer.data import Example, prepare_round


def batch_indices(step: int, size: int, n: int, seed: int) -> list[int]:
    """Row indices of step ``step``: epochs of a seeded permutation, read in order."""
    picked = []
    for position in range(step * size, (step + 1) * size):
        epoch, offset = divmod(position, n)
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        picked.append(order[offset])
    return picked


class Finetune:
    """One run: model, data, optimizer, conscience rounds; ``run()`` trains and publishes."""

    def __init__(self, config: FinetuneConfig, model_dir: Path) -> None:
        import torch
        from transformers import set_seed

        from trainer.round import load_policy

        self.config, self.model_dir = config, model_dir
        config.out.mkdir(parents=True, exist_ok=True)
        self.state = checkpoint.load_state(config.out) or checkpoint.State()
        resumed = checkpoint.checkpoint_dir(config.out) / "adapter" if self.state.step else None
        set_seed(config.seed)
        self.tokenizer, self.model = load_policy(config.trainer_config(model_dir), resumed)
        self.pad_id = self.tokenizer.pad_token_id
        task = split_task(
            config.data,
            self.tokenizer,
            rows=config.rows,
            heldout=config.heldout,
            max_length=config.max_length,
            seed=config.seed,
        )
        write_split(config.out, task)
        self.skipped_long = task.skipped_long
        self.examples = [sft_example(self.tokenizer, i, c) for i, c in enumerate(task.train)]
        self.prompts = [c[:-1] for c in task.train]
        for path in config.alignment_questions:
            self.prompts += open_questions(path, config.alignment_questions_limit)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
        if self.state.step:
            checkpoint.restore_optimizer(config.out, self.optimizer)
        self.pool: list[Example] = self._examples(self.state.pairs)
        self.model.train()

    def _examples(self, records: list) -> list[Example]:
        if not records:
            return []
        data = prepare_round(
            records, self.tokenizer, max_length=self.config.max_length, heldout_fraction=0.0
        )
        return data.train

    def conscience_round(self, rounds: Any, step: int) -> dict[str, Any]:
        """Let the current adapter draft; add the flagged drafts' pairs to the pool."""
        drafts = self.config.out / "drafts" / f"step-{step:06d}"
        self.model.save_pretrained(drafts)
        chosen = random.Random(self.config.seed * 7_919 + step).sample(
            self.prompts, min(self.config.alignment_prompts, len(self.prompts))
        )
        result = rounds.round(drafts, step, chosen)
        self.state.pairs += result.pairs
        self.pool += self._examples(result.pairs)
        summary = {
            "step": step,
            "drafted": result.drafted,
            "flagged": result.flagged,
            "failed": result.failed,
            "flag_rate": result.flag_rate,
            "pairs": len(result.pairs),
            "pool": len(self.pool),
        }
        self.state.rounds.append(summary)
        return summary

    def train_step(self, step: int) -> dict[str, Any]:
        """One optimizer step; the step's logged figures."""
        config = self.config
        rows = batch_indices(step, config.batch_size, len(self.examples), config.seed)
        loss = sft_loss(self.model, [self.examples[i] for i in rows], self.pad_id)
        logged: dict[str, Any] = {"step": step, "sft_loss": loss.item()}
        if config.alignment == "conscience" and self.pool and config.alignment_weight > 0:
            batch = random.Random(config.seed * 104_729 + step).sample(
                self.pool, min(config.alignment_batch, len(self.pool))
            )
            term = dpo_term(
                self.model,
                batch,
                beta=config.beta,
                nll_weight=config.alignment_nll_weight,
                pad_id=self.pad_id,
            )
            loss = loss + config.alignment_weight * term.loss
            logged.update(
                dpo_loss=term.loss.item(), dpo_margin=term.margin, dpo_accuracy=term.accuracy
            )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        logged["loss"] = loss.item()
        return logged

    def save(self) -> None:
        checkpoint.save(self.config.out, self.model, self.optimizer, self.state)


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeRemainingColumn(), TextColumn("{task.fields[info]}"))


def train(run: Finetune, rounds: Any) -> None:
    """Steps from the checkpoint's to ``config.steps``, with rounds and checkpoints."""
    config = run.config
    log = (config.out / "metrics.jsonl").open("a")
    with _progress() as progress, log:
        task = progress.add_task(
            "fine-tuning", total=config.steps, completed=run.state.step, info=""
        )
        for step in range(run.state.step, config.steps):
            if rounds is not None and step % config.alignment_every == 0:
                progress.update(task, info=f"conscience round at step {step}")
                summary = run.conscience_round(rounds, step)
                log.write(json.dumps({"round": summary}) + "\n")
            logged = run.train_step(step)
            log.write(json.dumps(logged) + "\n")
            log.flush()
            run.state.step = step + 1
            if run.state.step % config.save_every == 0 or run.state.step == config.steps:
                run.save()
            progress.update(task, advance=1, info=f"loss {logged['loss']:.3f}")


def finetune(config: FinetuneConfig, report=print) -> dict[str, Any]:
    """Train (resuming from ``OUT/checkpoint``), publish, return the summary."""
    from app.models import resolve_model
    from conscience.finetune.publish import publish, summarize, write_summary
    from conscience.finetune.rounds import ConscienceRounds

    model_dir = resolve_model(config.model, _cache_dir(config), report)
    run = Finetune(config, model_dir)
    rounds = None
    if config.alignment == "conscience":
        rounds = ConscienceRounds(config, model_dir)
        rounds.start()
    try:
        train(run, rounds)
    finally:
        if rounds is not None:
            rounds.close()
    summary = summarize(run)
    summary["version"] = publish(run, summary)
    summary["registry"] = str(config.registry)
    write_summary(config.out, summary)
    return summary


def _cache_dir(config: FinetuneConfig) -> Path:
    from app.settings import Settings

    return config.cache_dir or Settings().cache_dir
