"""``conscience loop --start-adapter``: the given adapter becomes the registry's first version."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.adapter_registry import ADAPTER_CONFIG, AdapterRegistry, RegistryError
from app.demo_model import write_demo_model
from conscience.loop import seed_registry


@pytest.fixture
def adapter(tmp_path):
    path = tmp_path / "sft"
    path.mkdir()
    (path / ADAPTER_CONFIG).write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    return path


def test_an_adapter_is_published_as_the_first_version(tmp_path, adapter):
    model = write_demo_model(tmp_path / "model")
    registry = AdapterRegistry(tmp_path / "work" / "adapters")
    assert seed_registry(registry, adapter, model) == "v000001"
    manifest = registry.read_manifest()
    assert manifest.current == "v000001" and manifest.versions[0].parent is None
    assert manifest.versions[0].metrics["started_from"] == str(adapter)
    copied = registry.version_dir("v000001") / "adapter_model.safetensors"
    assert copied.read_bytes() == b"weights"
    # a registry as the source: its current version; a registry with versions is not reseeded
    again = AdapterRegistry(tmp_path / "again")
    seed_registry(again, registry.root, model)
    assert (again.version_dir("v000001") / ADAPTER_CONFIG).is_file()
    with pytest.raises(RegistryError, match="already holds versions"):
        seed_registry(registry, adapter, model)


def test_a_bad_start_adapter_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "conscience.cli", "loop", "--workdir", str(tmp_path / "w"),
         "--start-adapter", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    missing = tmp_path / "missing"
    assert done.stdout.strip().splitlines()[-1] == (
        f"error: {missing}: neither a peft adapter nor an adapter registry with a version"
    )
    assert "Traceback" not in done.stderr + done.stdout
