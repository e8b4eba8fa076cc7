"""Resumable state of a fine-tuning run, in ``OUT/checkpoint/``, replaced atomically.

Holds the LoRA adapter (peft format), the optimizer and RNG states, the step reached, and the
conscience's pairs so far (JSONL of ``PairRecord``). A run started again with the same
``OUT`` continues from here.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.records import PairRecord

CHECKPOINT = "checkpoint"


@dataclass
class State:
    """Where a run stands (besides the weights)."""

    step: int = 0
    pairs: list[PairRecord] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)


def checkpoint_dir(out: Path) -> Path:
    return Path(out) / CHECKPOINT


def save(out: Path, model: Any, optimizer: Any, state: State) -> None:
    """Write the checkpoint into a temporary dir, then swap it in place of the old one."""
    import torch

    final = checkpoint_dir(out)
    tmp = final.with_name(f".{CHECKPOINT}-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / "adapter")
    rng = {"torch": torch.get_rng_state()}
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng}, tmp / "trainer.pt")
    lines = "".join(p.model_dump_json() + "\n" for p in state.pairs)
    (tmp / "pairs.jsonl").write_text(lines)
    meta = {"step": state.step, "rounds": state.rounds}
    (tmp / "state.json").write_text(json.dumps(meta, indent=1) + "\n")
    old = final.with_name(f".{CHECKPOINT}-old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_state(out: Path) -> State | None:
    """The saved state, or None when the run has no checkpoint."""
    folder = checkpoint_dir(out)
    if not (folder / "state.json").is_file():
        return None
    meta = json.loads((folder / "state.json").read_text())
    pairs = [
        PairRecord.model_validate_json(line)
        for line in (folder / "pairs.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return State(step=int(meta["step"]), pairs=pairs, rounds=list(meta["rounds"]))


def restore_optimizer(out: Path, optimizer: Any) -> None:
    """Load the optimizer and RNG states saved with the checkpoint."""
    import torch

    saved = torch.load(checkpoint_dir(out) / "trainer.pt", weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"]["torch"])
