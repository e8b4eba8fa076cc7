"""Which models an EM run answers with: the base, and adapters given as ``LABEL=PATH``.

``PATH`` is a peft adapter directory or an adapter registry (its current version).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.adapter_registry import ADAPTER_CONFIG, AdapterRegistry
from app.engine import Adapter


class ArmError(ValueError):
    """An ``--adapter`` value cannot be used."""


@dataclass(frozen=True)
class Arm:
    """One model under test: ``adapter`` None is the base model."""

    label: str
    adapter: Adapter | None


def adapter_dir(path: Path) -> Path:
    """A peft directory as given, or a registry's current version."""
    path = Path(path)
    if (path / ADAPTER_CONFIG).is_file():
        return path
    manifest = AdapterRegistry(path).read_manifest()
    if manifest is None or manifest.current is None:
        raise ArmError(f"{path}: neither a peft adapter nor an adapter registry with a version")
    return AdapterRegistry(path).version_dir(manifest.current)


def parse_arms(specs: list[str], with_base: bool) -> list[Arm]:
    """``base`` (when asked) then one arm per ``LABEL=PATH`` (or ``PATH``: label = dir name)."""
    arms = [Arm("base", None)] if with_base else []
    for number, spec in enumerate(specs, start=1):
        label, _, raw = spec.rpartition("=")
        path = adapter_dir(Path(raw))
        label = label or Path(raw).name
        if label in {a.label for a in arms}:
            raise ArmError(f"two arms are labelled {label!r}")
        adapter = Adapter(name=f"em-{number}-{label}", version=label, path=path, int_id=number)
        arms.append(Arm(label, adapter))
    return arms
