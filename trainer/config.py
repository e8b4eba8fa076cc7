"""Trainer configuration: one dataclass, every field with ``help``; YAML file plus CLI overrides.

Precedence: field defaults < ``--config file.yaml`` < command-line options. Plain Python only
(no torch, trl or peft): the CLI imports it to build its options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TrainerConfig:
    """Everything ``conscience train`` needs."""

    # Where things are
    queue: str = field(
        default="sqlite:///var/conscience/pairs.db",
        metadata={"help": "Pair queue to consume: sqlite:///PATH or redis://HOST:PORT/DB."},
    )
    adapters: Path = field(
        default=Path("adapters"),
        metadata={"help": "Adapter registry directory (versions + manifest.json)."},
    )
    model: Path | None = field(
        default=None, metadata={"help": "Local base model directory (the one the server serves)."}
    )
    model_name: str | None = field(
        default=None,
        metadata={
            "help": "Base model name recorded in the manifest. Default: the model dir's name."
        },
    )
    consumer: str = field(
        default="trainer",
        metadata={
            "help": "Consumer name this trainer leases pairs under; unique per running trainer "
            "(a restart under the same name takes back the previous run's leases at once)."
        },
    )

    # What to consume
    round_size: int = field(default=64, metadata={"help": "Pairs leased per round (at most)."})
    min_pairs: int = field(
        default=16, metadata={"help": "Train only once at least this many pairs are available."}
    )
    frameworks: list[str] | None = field(
        default=None,
        metadata={"help": "Only consume pairs flagged under these frameworks. Default: all."},
    )
    min_score: float | None = field(
        default=None,
        metadata={"help": "Only consume pairs whose review score (P(unethical)) is at least this."},
    )
    require_approval: bool = field(
        default=False,
        metadata={
            "help": "Only consume pairs a reviewer approved in the console (/console); "
            "pending pairs wait, rejected ones are never trained on."
        },
    )
    lease_s: float = field(
        default=1800.0,
        metadata={"help": "Lease length in seconds; must exceed a round's duration."},
    )
    poll_interval_s: float = field(
        default=30.0, metadata={"help": "Seconds between queue polls while too few pairs wait."}
    )
    once: bool = field(
        default=False,
        metadata={"help": "Train at most one round on what is queued now, then exit (no waiting)."},
    )

    # DPO
    beta: float = field(
        default=0.1,
        metadata={"help": "DPO beta: higher keeps the policy closer to the frozen base."},
    )
    learning_rate: float = field(
        default=5e-5, metadata={"help": "AdamW learning rate for the LoRA weights."}
    )
    loss_type: list[str] = field(
        default_factory=lambda: ["sigmoid", "sft"],
        metadata={
            "help": "TRL DPO loss terms; 'sigmoid' is DPO, 'sft' adds NLL on the chosen answer."
        },
    )
    loss_weights: list[float] = field(
        default_factory=lambda: [1.0, 0.2],
        metadata={"help": "Weight of each loss_type term, same order."},
    )
    epochs: float = field(default=1.0, metadata={"help": "Passes over each round's pairs."})
    per_device_batch_size: int = field(
        default=4, metadata={"help": "Pairs per device per optimizer step."}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Batches accumulated per optimizer step."}
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute activations in the backward pass (less memory, slower)."},
    )
    max_length: int = field(
        default=1024,
        metadata={"help": "Longest prompt+answer in tokens; longer pairs are skipped and counted."},
    )

    # LoRA
    lora_r: int = field(
        default=8,
        metadata={"help": "LoRA rank (the server's max_lora_rank must be at least this)."},
    )
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(
        default=0.0,
        metadata={"help": "LoRA dropout (TRL's DPO disables dropout layers, so 0 is what runs)."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={
            "help": "Modules to adapt (e.g. q_proj v_proj); 'all-linear': every linear but lm_head."
        },
    )

    # Data hygiene and evaluation
    replay_file: Path | None = field(
        default=None,
        metadata={
            "help": "JSONL of ordinary helpful chats in preference format ({prompt, chosen, "
            "rejected} as chat messages; rejected is typically a needless refusal), mixed into "
            "every round so the adapter does not drift into refusing."
        },
    )
    replay_ratio: float = field(
        default=0.25, metadata={"help": "Replay pairs mixed in per queued pair trained."}
    )
    heldout_fraction: float = field(
        default=0.1,
        metadata={
            "help": "Share of each round's pairs held out (measured, not trained on, still acked)."
        },
    )
    keep_versions: int = field(
        default=5, metadata={"help": "Adapter versions kept on disk (the current one always is)."}
    )
    seed: int = field(
        default=0, metadata={"help": "Random seed (held-out split, replay sampling, training)."}
    )
    metrics_port: int | None = field(
        default=None,
        metadata={
            "help": "Serve Prometheus metrics (conscience_trainer_*: rounds, pairs, loss, last "
            "publish) on this port. Default: off."
        },
    )

    def __post_init__(self) -> None:
        self.adapters = Path(self.adapters)
        self.model = Path(self.model) if self.model is not None else None
        self.replay_file = Path(self.replay_file) if self.replay_file is not None else None
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` on values that cannot work together."""
        if len(self.loss_weights) != len(self.loss_type):
            raise ValueError("loss_weights needs one weight per loss_type")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError("heldout_fraction must be in [0, 1)")
        if not 1 <= self.min_pairs <= self.round_size:
            raise ValueError("need 1 <= min_pairs <= round_size")
        positive = ("lease_s", "poll_interval_s", "epochs", "per_device_batch_size", "lora_r")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError("metrics_port must be in [0, 65535]")
        if self.max_length < 16 or self.keep_versions < 1 or self.replay_ratio < 0:
            raise ValueError("need max_length >= 16, keep_versions >= 1, replay_ratio >= 0")


def config_fields() -> list[dataclasses.Field]:
    """The config's fields, in declaration order (the CLI builds its options from them)."""
    return list(dataclasses.fields(TrainerConfig))


def load_config(path: Path | None = None, **overrides: Any) -> TrainerConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides`` that are not None."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of option names to values")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in config_fields()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown trainer options: {', '.join(unknown)}")
    return TrainerConfig(**values)
