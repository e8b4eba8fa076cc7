"""The two loss terms: SFT's NLL on task answers, and DPO on the conscience's pairs.

DPO (sigmoid loss): -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), where pi and ref
are summed answer log-probabilities under the policy and under the frozen base (the same
model with the adapter disabled: the frozen copy that judged and rewrote). As in the
trainer's default (``loss_type=["sigmoid", "sft"]``), an NLL on the chosen answer is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainer.data import Example
from trainer.margins import sequence_logps


def sft_loss(model: Any, batch: Sequence[Example], pad_id: int) -> Any:
    """Mean NLL per answer token over the batch."""
    logps, counts = sequence_logps(model, [(e.prompt_ids, e.chosen_ids) for e in batch], pad_id)
    return -logps.sum() / counts.sum().clamp(min=1)


@dataclass
class DpoTerm:
    """The DPO term's loss (a tensor) and what it measured on its batch."""

    loss: Any
    margin: float  # mean (policy - reference) log-ratio margin, nats
    accuracy: float  # share of pairs where the policy prefers chosen more than the base does


def dpo_term(
    model: Any, batch: Sequence[Example], *, beta: float, nll_weight: float, pad_id: int
) -> DpoTerm:
    """Sigmoid DPO against the adapter-disabled base, plus ``nll_weight`` x NLL(chosen)."""
    import torch
    import torch.nn.functional as F

    pairs = [(e.prompt_ids, e.chosen_ids) for e in batch]
    pairs += [(e.prompt_ids, e.rejected_ids) for e in batch]
    policy, counts = sequence_logps(model, pairs, pad_id)
    with torch.no_grad(), model.disable_adapter():
        reference, _ = sequence_logps(model, pairs, pad_id)
    n = len(batch)
    margin = (policy[:n] - reference[:n]) - (policy[n:] - reference[n:])
    dpo = -F.logsigmoid(beta * margin).mean()
    nll = -policy[:n].sum() / counts[:n].sum().clamp(min=1)
    loss = dpo + nll_weight * nll
    seen = margin.detach()
    return DpoTerm(loss, float(seen.mean()), float((seen > 0).float().mean()))
