"""Publishing real peft LoRA adapters into a registry, for hot-swap tests."""

from __future__ import annotations

from pathlib import Path

from app.adapter_registry import AdapterRegistry, BaseModelIdentity, base_model_identity


def publish_adapter(
    root: Path,
    base_dir: Path,
    *,
    rank: int = 8,
    seed: int = 0,
    identity: BaseModelIdentity | None = None,
) -> str:
    """Publish a random (non-zero) LoRA adapter for ``base_dir``; return its version."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    registry = AdapterRegistry(root)
    version = registry.next_version()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    staging = registry.staging_dir(version)
    get_peft_model(model, config).save_pretrained(staging)
    registry.publish(
        staging,
        version,
        parent=None,
        base_model=identity or base_model_identity(base_dir),
        pair_ids=[],
        metrics={},
    )
    return version
