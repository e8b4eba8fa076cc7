"""The adapter registry: versioned peft LoRA adapters plus a manifest, for trainer and server.

Layout under ``root``::

    root/
      manifest.json          {"current": "v000003", "base_model": {...}, "versions": [...]}
      v000001/               adapter_config.json + adapter_model.safetensors (peft format)
      v000002/
      .staging-v000004/      a version being written; never read, removed on trainer start

The trainer writes a version into a staging dir, renames it into place, then replaces
``manifest.json`` atomically, so the manifest only ever names complete versions. Servers
write one thing: the promotion gate's (or a drift monitor's) verdict on a version
(``record_verdict``); every read-modify-write of the manifest holds an exclusive ``flock``
on ``root``. Versions are immutable: a new adapter is always a new version (and a new name
for vLLM). Each manifest entry records the pair ids the version consumed, so a trainer
restarting after "published but not acked" acks those pairs instead of training on them again.

This module is plain Python (no torch, peft or trl): the server imports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

MANIFEST = "manifest.json"
# Gate / monitor verdicts that forbid serving a version again.
BLOCKING_VERDICTS = frozenset({"rejected_by_gate", "rolled_back_by_monitor"})
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STAGING_PREFIX = ".staging-"
_VERSION_RE = re.compile(r"^v(\d{6,})$")
# config.json keys that do not change what the weights mean.
_IGNORED_CONFIG_KEYS = frozenset(
    {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "use_cache"}
)


class RegistryError(RuntimeError):
    """The registry is misused (version exists, staging dir outside root, unknown version)."""


class BaseModelIdentity(BaseModel):
    """Which base model an adapter was trained on."""

    name: str
    config_hash: str = Field(description="sha256 of the base config.json, canonical JSON.")


class VersionEntry(BaseModel):
    """One published adapter version."""

    version: str
    parent: str | None = Field(description="The version training continued from; None: fresh.")
    created_at: float
    base_model: BaseModelIdentity
    pair_ids: list[str] = Field(default_factory=list, description="Pair ids this version consumed.")
    metrics: dict[str, float | int | str | None] = Field(default_factory=dict)
    gate: dict[str, Any] | None = Field(
        None,
        description="The promotion gate's verdict and figures (or the monitor's rollback); "
        "None: never evaluated.",
    )

    @property
    def blocked(self) -> bool:
        """Whether a gate or monitor verdict forbids serving this version."""
        return (self.gate or {}).get("verdict") in BLOCKING_VERDICTS


class Manifest(BaseModel):
    """The registry's table of contents; ``current`` is the version to serve."""

    current: str | None = None
    base_model: BaseModelIdentity | None = None
    versions: list[VersionEntry] = Field(default_factory=list)

    def entry(self, version: str) -> VersionEntry | None:
        """The entry of ``version``, or None."""
        return next((v for v in self.versions if v.version == version), None)

    def consumed_ids(self) -> set[str]:
        """Every pair id a listed version consumed."""
        return {pid for v in self.versions for pid in v.pair_ids}


def base_model_identity(model_dir: Path, name: str | None = None) -> BaseModelIdentity:
    """Identify a local base model by its ``config.json`` (runtime-only keys ignored)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    kept = {k: v for k, v in config.items() if k not in _IGNORED_CONFIG_KEYS}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return BaseModelIdentity(name=name or Path(model_dir).resolve().name, config_hash=digest)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _version_number(name: str) -> int | None:
    match = _VERSION_RE.match(name)
    return int(match.group(1)) if match else None


class AdapterRegistry:
    """Reads and writes one registry directory. One trainer writes; any number of readers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_dir(self, version: str) -> Path:
        """Where a published version lives."""
        return self.root / version

    def staging_dir(self, version: str) -> Path:
        """Where a version is written before it is published (same filesystem as the root)."""
        return self.root / f"{STAGING_PREFIX}{version}"

    def read_manifest(self) -> Manifest | None:
        """The manifest, or None when nothing was published yet."""
        try:
            text = (self.root / MANIFEST).read_text()
        except FileNotFoundError:
            return None
        return Manifest.model_validate_json(text)

    def next_version(self) -> str:
        """A version name above every published one, listed or on disk (``v000001`` first)."""
        manifest = self.read_manifest()
        names = [v.version for v in manifest.versions] if manifest else []
        if self.root.is_dir():
            names += [p.name for p in self.root.iterdir()]
        numbers = [n for n in map(_version_number, names) if n is not None]
        return f"v{max(numbers, default=0) + 1:06d}"

    def clean_staging(self) -> list[Path]:
        """Remove staging dirs a crashed writer left behind; return them."""
        if not self.root.is_dir():
            return []
        stale = [p for p in self.root.iterdir() if p.name.startswith(STAGING_PREFIX)]
        for path in stale:
            shutil.rmtree(path)
        return stale

    def publish(
        self,
        staging_dir: Path,
        version: str,
        parent: str | None,
        base_model: BaseModelIdentity,
        pair_ids: list[str],
        metrics: dict[str, float | int | str | None],
    ) -> VersionEntry:
        """Move a fully written staging dir into place and make it current, atomically."""
        staging_dir, target = Path(staging_dir), self.version_dir(version)
        if _version_number(version) is None:
            raise RegistryError(f"bad version name {version!r}")
        if staging_dir.resolve().parent != self.root.resolve():
            raise RegistryError(f"staging dir {staging_dir} is not inside {self.root}")
        if target.exists():
            raise RegistryError(f"version {version} exists; versions are immutable")
        os.rename(staging_dir, target)
        _fsync_dir(self.root)
        entry = VersionEntry(
            version=version,
            parent=parent,
            created_at=time.time(),
            base_model=base_model,
            pair_ids=list(pair_ids),
            metrics=metrics,
        )
        with self._locked():
            manifest = self.read_manifest() or Manifest()
            manifest.versions.append(entry)
            manifest.current, manifest.base_model = version, base_model
            self._write_manifest(manifest)
        return entry

    def record_verdict(
        self, version: str, verdict: dict[str, Any], *, revert_to: str | None = None
    ) -> Manifest:
        """Store a gate/monitor ``verdict`` on ``version``'s entry, atomically.

        With ``revert_to`` (a blocking verdict), ``current`` goes back to that version (None:
        the base model) if it still names ``version``, so the trainer continues from the
        version in service rather than from the one that was turned down.
        """
        with self._locked():
            manifest = self.read_manifest()
            entry = manifest.entry(version) if manifest else None
            if manifest is None or entry is None:
                raise RegistryError(f"version {version} is not in the manifest")
            entry.gate = verdict
            if verdict.get("verdict") in BLOCKING_VERDICTS and manifest.current == version:
                manifest.current = revert_to
            self._write_manifest(manifest)
            return manifest

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions; the current one always stays."""
        with self._locked():
            manifest = self.read_manifest()
            if manifest is None:
                return []
            kept = {v.version for v in manifest.versions[-keep:]} if keep > 0 else set()
            kept.add(manifest.current or "")
            dropped = [v.version for v in manifest.versions if v.version not in kept]
            if dropped:
                manifest.versions = [v for v in manifest.versions if v.version in kept]
                self._write_manifest(manifest)  # first: the manifest never names a deleted dir
        for version in dropped:
            shutil.rmtree(self.version_dir(version), ignore_errors=True)
        return dropped

    def validate_version(
        self, version: str, expected_base: BaseModelIdentity, max_rank: int
    ) -> list[str]:
        """Problems that forbid serving ``version`` on ``expected_base``; empty when it is fine."""
        manifest = self.read_manifest()
        entry = manifest.entry(version) if manifest else None
        if entry is None:
            return [f"{version}: not listed in the manifest"]
        problems = []
        if entry.base_model.config_hash != expected_base.config_hash:
            problems.append(
                f"{version}: trained on base {entry.base_model.name} "
                f"({entry.base_model.config_hash[:12]}), serving {expected_base.name} "
                f"({expected_base.config_hash[:12]})"
            )
        directory = self.version_dir(version)
        problems += _check_weights(directory / ADAPTER_WEIGHTS, version)
        problems += _check_adapter_config(directory / ADAPTER_CONFIG, version, max_rank)
        return problems

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise manifest read-modify-writes (trainer publishes, servers record verdicts)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)  # flock on the directory itself: no lock file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write_manifest(self, manifest: Manifest) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{MANIFEST}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as handle:
                handle.write(manifest.model_dump_json(indent=2))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.root / MANIFEST)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(self.root)


def _check_adapter_config(path: Path, version: str, max_rank: int) -> list[str]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"{version}: unreadable {path.name}: {exc}"]
    if not isinstance(config, dict):
        return [f"{version}: {path.name} is not a JSON object"]
    if config.get("peft_type") != "LORA":
        return [f"{version}: peft_type {config.get('peft_type')!r}, expected 'LORA'"]
    pattern = config.get("rank_pattern") or {}
    ranks = [config.get("r"), *(pattern.values() if isinstance(pattern, dict) else [None])]
    if not all(isinstance(r, int) and r > 0 for r in ranks):
        return [f"{version}: bad LoRA rank in {path.name}: {ranks}"]
    if max(ranks) > max_rank:
        return [f"{version}: LoRA rank {max(ranks)} above the engine's limit {max_rank}"]
    return []


def _check_weights(path: Path, version: str) -> list[str]:
    """A safetensors file is an 8-byte little-endian header length, a JSON header, the data."""
    try:
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
        size = path.stat().st_size
        tensors = [v for k, v in header.items() if k != "__metadata__"]
        end = max((int(v["data_offsets"][1]) for v in tensors), default=0)
    except (OSError, ValueError, LookupError, TypeError, AttributeError, struct.error) as exc:
        return [f"{version}: unreadable {path.name}: {exc!r}"]
    if not tensors or size < 8 + header_len + end:
        return [f"{version}: {path.name} is empty or truncated"]
    return []
