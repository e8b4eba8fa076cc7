"""One training round on the tiny model: data checks, margins, base untouched, continuation."""

from __future__ import annotations

import hashlib
import math

import pytest
from safetensors import safe_open
from transformers import AutoTokenizer

from tests.trainer.trainer_helpers import make_pairs, trainer_options
from trainer.config import TrainerConfig
from trainer.data import prepare_round
from trainer.round import train_round


def digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_prepare_round_skips_counts_and_holds_out_stably(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    records = make_pairs(12)
    future = make_pairs(1, start=100, schema_version=99)
    long = make_pairs(1, start=200)
    long[0].chosen[0].content = "word " * 300
    same = make_pairs(1, start=300)  # a rewrite that repeats the draft: nothing to prefer
    same[0].chosen[0].content = same[0].rejected[0].content + "\n"
    rows = records + future + long + same
    data = prepare_round(rows, tokenizer, max_length=128, heldout_fraction=0.25)
    assert data.skipped_schema == [future[0].id]
    assert data.skipped_long == [long[0].id]
    assert data.skipped_unchanged == [same[0].id]
    assert len(data.heldout) == math.ceil(0.25 * 12) and len(data.train) == 9
    assert set(data.consumed_ids()) == {r.id for r in rows}
    again = prepare_round(records[::-1], tokenizer, max_length=128, heldout_fraction=0.25)
    assert {e.id for e in again.heldout} == {e.id for e in data.heldout}
    example = data.train[0]
    rendered = tokenizer.decode(example.prompt_ids + example.chosen_ids)
    assert rendered.endswith(
        "<|im_start|>assistant\n" + example.row["chosen"][0]["content"] + "<|im_end|>\n"
    )


@pytest.fixture(scope="module")
def first_round(demo_model, tmp_path_factory):
    """A fresh round on 32 pairs; returns (config, data, metrics, adapter dir, model digest)."""
    tmp = tmp_path_factory.mktemp("round")
    config = TrainerConfig(**trainer_options(demo_model, tmp))
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    data = prepare_round(make_pairs(32), tokenizer, max_length=128, heldout_fraction=0.25)
    before = digest(demo_model)
    metrics = train_round(config, data, None, tmp / "v1")
    return config, data, metrics, tmp / "v1", before


def test_round_raises_heldout_margin(first_round):
    _, data, metrics, adapter, _ = first_round
    assert len(data.heldout) == 8
    assert metrics["heldout_margin_after"] > metrics["heldout_margin_before"] + 3.0
    assert metrics["train_margin_after"] > metrics["train_margin_before"] + 3.0
    assert metrics["loss"] > 0 and metrics["reward_accuracy"] is not None
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in adapter.iterdir()
    }


def test_round_leaves_base_weights_untouched(first_round, demo_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    *_, adapter, before = first_round
    assert digest(demo_model) == before
    with safe_open(adapter / "adapter_model.safetensors", "pt") as weights:
        assert all(".lora_A." in k or ".lora_B." in k for k in weights.keys())  # noqa: SIM118
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    base_logits = AutoModelForCausalLM.from_pretrained(demo_model)(ids).logits
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_model), adapter)
    with torch.no_grad(), policy.disable_adapter():
        assert torch.equal(policy(ids).logits, base_logits.detach())
    with torch.no_grad():
        assert not torch.allclose(policy(ids).logits, base_logits.detach())


def test_round_continues_from_parent(first_round, tmp_path):
    config, data, metrics, adapter, _ = first_round
    again = train_round(config, data, adapter, tmp_path / "v2")
    assert again["train_margin_before"] == pytest.approx(metrics["train_margin_after"], abs=1e-3)
    assert again["train_margin_after"] > again["train_margin_before"]
