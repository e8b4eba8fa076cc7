"""Trainer throughput: pairs/second of a DPO round (prepare + train + measure + save).

    python -m benchmarks.trainer_bench                       # the tiny demo model
    python -m benchmarks.trainer_bench --model DIR --pairs 32 --rounds 2

Each round continues from the previous one's adapter, as the online loop does. No queue:
this measures the training side only. Prints one line per round; asserts nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import typer

from app.records import Message, PairRecord
from trainer.config import TrainerConfig

SUBJECTS = ["bread", "chemistry", "locks", "passwords", "medicine", "history", "cars", "money"]


def synthetic_pairs(n: int) -> list[PairRecord]:
    """Flagged-looking pairs of realistic length (answers of a few dozen tokens)."""
    pairs = []
    for i in range(n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        question = f"Question {i}: explain how {subject} works and what I should watch out for."
        safe = f"Here is a careful overview of {subject}. " * 4 + "Stay safe and ask an expert."
        unsafe = f"Sure, here is how to misuse {subject} to hurt someone. " * 4
        pairs.append(
            PairRecord(
                prompt=[Message(role="user", content=question)],
                chosen=[Message(role="assistant", content=safe)],
                rejected=[Message(role="assistant", content=unsafe)],
                framework="introspective",
                framework_version="1",
                review_prompt_hash="0" * 64,
                verdict="unethical",
                score=0.9,
            )
        )
    return pairs


def bench(
    model: Path | None = typer.Option(None, help="Base model dir. Default: the tiny demo model."),
    pairs: int = typer.Option(64, help="Pairs per round."),
    rounds: int = typer.Option(3, help="Rounds (each continues from the last)."),
    epochs: float = typer.Option(1.0, help="Epochs per round."),
    batch_size: int = typer.Option(4, help="Pairs per optimizer step."),
    max_length: int = typer.Option(512, help="Longest prompt + answer in tokens."),
) -> None:
    """Print pairs/second for each training round."""
    import trl  # noqa: F401  (imported before timing: a one-off cost, not a round's)
    from transformers import AutoTokenizer

    from app.demo_model import write_demo_model
    from trainer.data import prepare_round
    from trainer.round import train_round

    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as tmp:
        model = model or write_demo_model(Path(tmp) / "demo")
        config = TrainerConfig(
            model=model, epochs=epochs, per_device_batch_size=batch_size, max_length=max_length
        )
        tokenizer = AutoTokenizer.from_pretrained(model)
        parent = None
        for index in range(1, rounds + 1):
            started = time.perf_counter()
            data = prepare_round(
                synthetic_pairs(pairs), tokenizer, max_length=max_length, heldout_fraction=0.1
            )
            staging = Path(tmp) / f"v{index}"
            metrics = train_round(config, data, parent, staging)
            seconds = time.perf_counter() - started
            parent = staging
            print(
                f"round {index}: model={Path(model).name} pairs={pairs} trained={len(data.train)}"
                f" epochs={epochs} seconds={seconds:.1f} pairs_per_s={pairs / seconds:.2f}"
                f" heldout_margin={metrics['heldout_margin_before']:+.2f}"
                f"→{metrics['heldout_margin_after']:+.2f}",
                flush=True,
            )


if __name__ == "__main__":
    typer.run(bench)
