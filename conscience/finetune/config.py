"""``conscience finetune`` configuration: one dataclass, every field with ``help``.

The LoRA and DPO fields are the trainer's own (``trainer.config.TrainerConfig``: same
names, defaults and help), so both commands mean the same by ``--lora-r`` or ``--beta``.
Plain Python: the CLI imports it to build its options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trainer.config import TrainerConfig

_TRAINER_FIELDS = {f.name: f for f in dataclasses.fields(TrainerConfig)}


def _reused(name: str, **default: Any) -> Any:
    """A field with the trainer's help text and default (or the given ``default=``)."""
    source = _TRAINER_FIELDS[name]
    if "default" in default:
        return field(default=default["default"], metadata=dict(source.metadata))
    if source.default_factory is not dataclasses.MISSING:
        return field(default_factory=source.default_factory, metadata=dict(source.metadata))
    return field(default=source.default, metadata=dict(source.metadata))


@dataclass
class FinetuneConfig:
    """Everything ``conscience finetune`` needs."""

    data: Path = field(metadata={"help": "Task data: chat JSONL, one {'messages': [...]} a line."})
    out: Path = field(metadata={"help": "Run directory (checkpoint, held-out rows, metrics)."})
    model: str | None = field(
        default=None,
        metadata={"help": "Base model: name, directory or hub id (default: the default model)."},
    )
    adapters: Path | None = field(
        default=None,
        metadata={"help": "Adapter registry to publish the result into. Default: OUT/adapters."},
    )
    rows: int = field(default=256, metadata={"help": "Task rows trained on (after held-out)."})
    heldout: int = field(
        default=32,
        metadata={"help": "Task rows held out (written to OUT/heldout.jsonl for the eval)."},
    )
    steps: int = field(default=64, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=2, metadata={"help": "Task rows per optimizer step."})
    learning_rate: float = _reused("learning_rate", default=1e-4)
    max_length: int = _reused("max_length", default=384)
    lora_r: int = _reused("lora_r")
    lora_alpha: int = _reused("lora_alpha")
    lora_dropout: float = _reused("lora_dropout")
    lora_target_modules: list[str] = _reused("lora_target_modules")  # noqa: RUF009
    alignment: Literal["conscience", "off"] = field(
        default="conscience",
        metadata={"help": "conscience: add the conscience's DPO term; off: plain SFT."},
    )
    alignment_weight: float = field(
        default=1.0, metadata={"help": "Weight (lambda) of the DPO term in the loss."}
    )
    alignment_every: int = field(
        default=16,
        metadata={"help": "Steps between conscience rounds (the policy drafts, the base reviews)."},
    )
    alignment_prompts: int = field(
        default=8, metadata={"help": "Prompts the policy answers per conscience round."}
    )
    alignment_questions: list[Path] = field(
        default_factory=list,
        metadata={
            "help": "Open questions drafted on besides the task's prompts (repeat): chat JSONL, "
            "CSV with a goal/prompt column, or one a line. Never the EM evaluation questions."
        },
    )
    alignment_questions_limit: int | None = field(
        default=None, metadata={"help": "Questions taken from each --alignment-questions file."}
    )
    alignment_batch: int = field(default=2, metadata={"help": "Pairs in the DPO term per step."})
    alignment_nll_weight: float = field(
        default=0.2,
        metadata={"help": "Weight of the NLL on the chosen (rewritten) answer in the DPO term."},
    )
    beta: float = _reused("beta")
    framework: str = field(
        default="introspective", metadata={"help": "The conscience's framework."}
    )
    frameworks_dir: Path | None = field(
        default=None, metadata={"help": "Directory of your own framework YAML files."}
    )
    flag_threshold: float | None = field(
        default=None,
        metadata={"help": "Flag at this score. Default: the calibration profile's threshold."},
    )
    draft_max_tokens: int = field(
        default=256, metadata={"help": "Longest draft and rewrite in tokens."}
    )
    save_every: int = field(default=16, metadata={"help": "Steps between checkpoints."})
    max_model_len: int = field(default=2048, metadata={"help": "Engine context length."})
    cache_dir: Path | None = field(default=None, metadata={"help": "Prepared-model cache."})
    seed: int = _reused("seed")

    def __post_init__(self) -> None:
        for name in ("data", "out", "adapters", "frameworks_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        self.alignment_questions = [Path(p) for p in self.alignment_questions]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` on values that cannot work together."""
        positive = ("rows", "steps", "batch_size", "alignment_every", "alignment_prompts")
        for name in (*positive, "alignment_batch", "save_every", "lora_r", "draft_max_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.alignment not in ("conscience", "off"):
            raise ValueError("alignment must be 'conscience' or 'off'")
        if self.heldout < 0 or self.alignment_weight < 0 or self.max_length < 16:
            raise ValueError("need heldout >= 0, alignment_weight >= 0, max_length >= 16")

    @property
    def registry(self) -> Path:
        """Where the finished adapter is published."""
        return self.adapters if self.adapters is not None else self.out / "adapters"

    def trainer_config(self, model_dir: Path) -> TrainerConfig:
        """The trainer's config for the shared LoRA/model loading code."""
        return TrainerConfig(
            model=model_dir,
            adapters=self.registry,
            beta=self.beta,
            learning_rate=self.learning_rate,
            max_length=self.max_length,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            lora_target_modules=list(self.lora_target_modules),
            seed=self.seed,
        )


def config_fields() -> list[dataclasses.Field]:
    """The config's fields, in declaration order (the CLI builds its options from them)."""
    return list(dataclasses.fields(FinetuneConfig))
