"""Log-probability margins of chosen over rejected answers, from a plain forward pass.

For each pair: ``log p(chosen | prompt) - log p(rejected | prompt)`` under the model (sums of
answer-token log-probabilities, prompt rendered with the chat template). Measured before and
after a round, on trained and held-out pairs, independently of TRL's own logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainer.data import Example


@dataclass(frozen=True)
class MarginStats:
    """Mean margin (nats) and the share of pairs where chosen beats rejected."""

    margin: float | None
    accuracy: float | None
    n: int


def sequence_logps(
    model: Any, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[Any, Any]:
    """(sum of answer-token log-probs, answer token counts) per ``(prompt_ids, answer_ids)``,
    as tensors, in one forward pass (with gradients unless the caller disables them)."""
    import torch

    device = next(model.parameters()).device
    width = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    scored = torch.zeros((len(pairs), width - 1), dtype=torch.bool)
    for row, (prompt, answer) in enumerate(pairs):
        seq = prompt + answer
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        scored[row, max(len(prompt), 1) - 1 : len(seq) - 1] = True
    ids, mask, scored = ids.to(device), mask.to(device), scored.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    token = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token * scored).sum(dim=1), scored.sum(dim=1)


def answer_logps(
    model: Any, pairs: Sequence[tuple[list[int], list[int]]], *, pad_id: int, batch_size: int
) -> list[float]:
    """Sum of log p(answer tokens | prompt tokens) for each ``(prompt_ids, answer_ids)``."""
    totals: list[float] = []
    for start in range(0, len(pairs), batch_size):
        sums, _ = sequence_logps(model, pairs[start : start + batch_size], pad_id)
        totals += sums.tolist()
    return totals


def measure(
    model: Any, examples: Sequence[Example], *, pad_id: int, batch_size: int
) -> MarginStats:
    """Margins of ``examples`` under ``model`` (eval mode, no gradients)."""
    import torch

    if not examples:
        return MarginStats(None, None, 0)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            chosen = answer_logps(
                model,
                [(e.prompt_ids, e.chosen_ids) for e in examples],
                pad_id=pad_id,
                batch_size=batch_size,
            )
            rejected = answer_logps(
                model,
                [(e.prompt_ids, e.rejected_ids) for e in examples],
                pad_id=pad_id,
                batch_size=batch_size,
            )
    finally:
        model.train(was_training)
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    wins = sum(m > 0 for m in margins)
    return MarginStats(sum(margins) / len(margins), wins / len(margins), len(margins))
