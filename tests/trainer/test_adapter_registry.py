"""The adapter registry: identity, publish/prune atomicity, validation (plain files, no torch)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from app.adapter_registry import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterRegistry,
    RegistryError,
    base_model_identity,
)

CONFIG = {"model_type": "llama", "hidden_size": 128, "num_hidden_layers": 2, "vocab_size": 512}


def write_model_config(directory: Path, **extra) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({**CONFIG, **extra}))
    return directory


def stage(registry: AdapterRegistry, version: str, rank: int = 8) -> Path:
    """A complete peft-format adapter dir in the registry's staging area."""
    staging = registry.staging_dir(version)
    staging.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 16, "target_modules": ["q_proj"]}
    (staging / ADAPTER_CONFIG).write_text(json.dumps(config))
    tensors = {"base_model.model.q_proj.lora_A.weight": np.ones((rank, 128), dtype=np.float32)}
    save_file(tensors, str(staging / ADAPTER_WEIGHTS))
    return staging


@pytest.fixture
def base(tmp_path):
    return base_model_identity(write_model_config(tmp_path / "base"))


def publish_next(registry: AdapterRegistry, base, pair_ids=(), rank: int = 8) -> str:
    version = registry.next_version()
    manifest = registry.read_manifest()
    parent = manifest.current if manifest else None
    registry.publish(stage(registry, version, rank), version, parent, base, list(pair_ids), {})
    return version


def test_identity_ignores_runtime_keys_only(tmp_path):
    plain = base_model_identity(write_model_config(tmp_path / "a"))
    noisy = base_model_identity(
        write_model_config(
            tmp_path / "b", transformers_version="9.9", _name_or_path="/x", dtype="bfloat16"
        )
    )
    wider = base_model_identity(write_model_config(tmp_path / "c", hidden_size=256))
    assert plain.config_hash == noisy.config_hash != wider.config_hash
    assert (plain.name, base_model_identity(tmp_path / "a", "smol").name) == ("a", "smol")


def test_publish_makes_complete_version_current(tmp_path, base):
    registry = AdapterRegistry(tmp_path / "adapters")
    assert registry.read_manifest() is None
    assert registry.next_version() == "v000001"
    first = publish_next(registry, base, ["p1", "p2"])
    second = publish_next(registry, base, ["p3"])
    manifest = registry.read_manifest()
    assert (first, second, manifest.current) == ("v000001", "v000002", "v000002")
    assert manifest.entry(second).parent == first
    assert manifest.consumed_ids() == {"p1", "p2", "p3"}
    assert not registry.staging_dir(second).exists()
    assert registry.validate_version(second, base, max_rank=16) == []
    assert sorted(p.name for p in registry.root.iterdir()) == ["manifest.json", first, second]


def test_versions_are_immutable_and_staging_must_be_inside(tmp_path, base):
    registry = AdapterRegistry(tmp_path / "adapters")
    version = publish_next(registry, base)
    with pytest.raises(RegistryError, match="immutable"):
        registry.publish(stage(registry, version), version, None, base, [], {})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(RegistryError, match="not inside"):
        registry.publish(outside, "v000009", None, base, [], {})


def test_next_version_counts_dirs_on_disk_and_cleans_staging(tmp_path, base):
    registry = AdapterRegistry(tmp_path / "adapters")
    publish_next(registry, base)
    (registry.root / "v000007").mkdir()  # e.g. published by hand, not listed
    stale = stage(registry, "v000008")
    assert registry.next_version() == "v000008"
    assert registry.clean_staging() == [stale]
    assert not stale.exists()


def test_prune_keeps_newest_and_current(tmp_path, base):
    registry = AdapterRegistry(tmp_path / "adapters")
    versions = [publish_next(registry, base) for _ in range(5)]
    manifest = registry.read_manifest()
    manifest.current = versions[0]  # e.g. rolled back by an operator
    registry._write_manifest(manifest)
    assert registry.prune(keep=2) == versions[1:3]
    kept = [v.version for v in registry.read_manifest().versions]
    assert kept == [versions[0], *versions[3:]]
    assert all(registry.version_dir(v).is_dir() for v in kept)
    assert not any(registry.version_dir(v).exists() for v in versions[1:3])


def test_validate_reports_each_problem(tmp_path, base):
    registry = AdapterRegistry(tmp_path / "adapters")
    good, wide, broken, truncated = (publish_next(registry, base, rank=r) for r in (8, 32, 8, 8))
    other = base_model_identity(write_model_config(tmp_path / "other", hidden_size=64))
    (registry.version_dir(broken) / ADAPTER_CONFIG).write_text("{not json")
    weights = registry.version_dir(truncated) / ADAPTER_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-16])

    assert registry.validate_version(good, base, max_rank=16) == []
    assert "rank 32 above" in registry.validate_version(wide, base, max_rank=16)[0]
    assert "unreadable adapter_config.json" in registry.validate_version(broken, base, 16)[0]
    assert "truncated" in registry.validate_version(truncated, base, 16)[0]
    assert "trained on base" in registry.validate_version(good, other, 16)[0]
    assert "not listed" in registry.validate_version("v000099", base, 16)[0]
    (registry.version_dir(good) / ADAPTER_WEIGHTS).unlink()
    assert "unreadable adapter_model.safetensors" in registry.validate_version(good, base, 16)[0]


def test_readers_never_see_a_partial_manifest(tmp_path, base):
    registry = AdapterRegistry(tmp_path / "adapters")
    publish_next(registry, base)
    seen, stop = [], threading.Event()

    def read() -> None:
        reader = AdapterRegistry(registry.root)
        while not stop.is_set():
            current = reader.read_manifest().current  # raises on a torn file
            problems = reader.validate_version(current, base, max_rank=16)
            if reader.read_manifest().current == current:  # else: a stale read, pruned since
                seen.append(problems)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for round_ in range(30):
            publish_next(registry, base, [f"p{round_}-{i}" for i in range(50)])
            registry.prune(keep=3)
    finally:
        stop.set()
        thread.join()
    assert seen and [p for p in seen if p] == []
