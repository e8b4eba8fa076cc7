"""One training round: LoRA DPO (TRL) on the pairs, measured before and after, saved to staging.

The reference model is the frozen base (adapter disabled), the same frozen copy that judges
and rewrites in the server, so every version stays anchored to the base however many rounds
it continues from. Training continues from the parent version's LoRA weights when there is one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from trainer.config import TrainerConfig
from trainer.data import RoundData
from trainer.margins import MarginStats, measure


def load_policy(config: TrainerConfig, parent_dir: Path | None) -> tuple[Any, Any]:
    """Tokenizer and a trainable peft model: the parent adapter, or a fresh LoRA."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(config.model, dtype=torch.float32)
    if parent_dir is not None:
        return tokenizer, PeftModel.from_pretrained(base, parent_dir, is_trainable=True)
    targets = config.lora_target_modules
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )
    return tokenizer, get_peft_model(base, lora)


def dpo_args(config: TrainerConfig, output_dir: str) -> Any:
    """TRL's DPOConfig for one round (no checkpoints, no reporting)."""
    import torch
    from trl import DPOConfig

    cuda = torch.cuda.is_available()
    return DPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        beta=config.beta,
        loss_type=list(config.loss_type),
        loss_weights=list(config.loss_weights),
        max_length=config.max_length,
        gradient_checkpointing=config.gradient_checkpointing,
        use_cpu=not cuda,  # also what makes multi-process CPU runs use gloo DDP
        ddp_find_unused_parameters=False,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_pin_memory=cuda,
        logging_strategy="epoch",
        save_strategy="no",
        report_to=[],
        seed=config.seed,
    )


def _margin_metrics(prefix: str, before: MarginStats, after: MarginStats) -> dict[str, Any]:
    return {
        f"{prefix}_margin_before": before.margin,
        f"{prefix}_margin_after": after.margin,
        f"{prefix}_accuracy_before": before.accuracy,
        f"{prefix}_accuracy_after": after.accuracy,
    }


def train_round(
    config: TrainerConfig,
    data: RoundData,
    parent_dir: Path | None,
    staging_dir: Path | None,
) -> dict[str, Any]:
    """Train on ``data``; the main process measures and saves the adapter into ``staging_dir``.

    Every process of a multi-process launch calls this with the same data; only the one given
    a ``staging_dir`` (the main process) measures margins and writes the adapter.
    """
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOTrainer

    set_seed(config.seed)
    tokenizer, policy = load_policy(config, parent_dir)
    rows = [e.row for e in data.train + data.replay]
    with tempfile.TemporaryDirectory(prefix="conscience-dpo-") as output_dir:
        trainer = DPOTrainer(
            model=policy,
            ref_model=None,
            args=dpo_args(config, output_dir),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        model = trainer.accelerator.unwrap_model(trainer.model)
        # TRL copies a loaded adapter into a frozen "ref" adapter; drop it so the reference
        # is the base model with adapters disabled.
        if "ref" in model.peft_config:
            model.delete_adapter("ref")
        batch = {"pad_id": tokenizer.pad_token_id, "batch_size": config.per_device_batch_size}
        main = staging_dir is not None
        before = [measure(model, d, **batch) for d in (data.train, data.heldout)] if main else []
        result = trainer.train()
        if not main:
            return {}
        after = [measure(model, d, **batch) for d in (data.train, data.heldout)]
        model.save_pretrained(staging_dir)
    logged = [entry for entry in trainer.state.log_history if "rewards/accuracies" in entry]
    return {
        "loss": result.training_loss,
        "reward_accuracy": logged[-1]["rewards/accuracies"] if logged else None,
        **_margin_metrics("train", before[0], after[0]),
        **_margin_metrics("heldout", before[1], after[1]),
    }
