"""Hot-swapping the policy's LoRA adapter from the registry the trainer writes.

The manager follows ``manifest.json`` (polling), validates each new version (files, base
model, rank), loads it into the engine under a **new** name and id (vLLM's prefix cache can
serve stale entries for a reused name), switches drafts to it atomically, and evicts versions
older than the previous one once no in-flight draft uses them. A version that fails is
remembered as rejected and never retried. Operators can pin a version, resume following, or
roll back to the previous good version.

With a promotion gate attached (``gate``, set by ``app.lifecycle`` when ``--gate`` is on), a
new version is loaded under its own name and evaluated in shadow before drafts use it; the
verdict goes into the manifest, and a rejected version is never served (the manifest's
``current`` goes back to the version in service, so the trainer continues from that). A drift
monitor calls ``roll_back_automatically``. Verdicts already in the manifest (another replica
gated first) are obeyed without evaluating again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from app import metrics
from app.adapter_registry import AdapterRegistry, BaseModelIdentity, Manifest
from app.engine import Adapter, Engine
from app.errors import ConscienceError, InvalidRequest, UnknownModel
from app.policy import PolicySlot

log = logging.getLogger("conscience.adapters")
# vLLM keys resident adapters by integer id: ids are unique per process, so managers that
# share one engine (replicas in one process, the test servers) never collide on an id.
_ADAPTER_IDS = itertools.count(101)


class AdapterRejected(InvalidRequest):
    """A version failed validation or loading (409 when an operator asked for it)."""

    status_code = 409
    code = "adapter_rejected"


class AdapterStatus(BaseModel):
    """What ``GET /admin/adapters`` answers."""

    current: str | None
    previous: str | None
    following: bool
    manifest_current: str | None
    loaded: list[str]
    history: list[dict]
    rejected: dict[str, str]
    gate_enabled: bool = False
    verdicts: dict[str, dict] = Field(
        default_factory=dict, description="Gate / monitor verdicts per version (the manifest's)."
    )
    rollbacks: list[dict] = Field(default_factory=list, description="Automatic rollbacks.")
    monitor: dict | None = Field(None, description="The last canary run's figures.")


@dataclass
class AdapterManager:
    """Follows a registry and keeps the policy slot on its current (or pinned) version."""

    engine: Engine
    policy: PolicySlot
    registry: AdapterRegistry
    base: BaseModelIdentity
    max_rank: int
    poll_s: float = 2.0
    following: bool = True
    previous: str | None = None
    loaded: dict[str, Adapter] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    gate: Callable[[Adapter, Adapter | None], Awaitable[dict]] | None = None
    rollbacks: list[dict] = field(default_factory=list)
    monitor: dict | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _syncing: asyncio.Lock = field(default_factory=asyncio.Lock)  # one gate run per version
    _task: asyncio.Task | None = None
    _evictions: set[asyncio.Task] = field(default_factory=set)

    async def start(self) -> None:
        """Load the manifest's current version (if any) and start following."""
        await self.sync()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        for task in [self._task, *self._evictions]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def current(self) -> str | None:
        adapter = self.policy.current
        return adapter.version if adapter else None

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.sync()
            except Exception:  # the follower must outlive any one bad manifest read
                log.exception("adapter sync failed")

    async def sync(self) -> None:
        """Swap to the manifest's current version if following and it is new and not rejected.

        Syncs run one at a time (the follower and ``follow`` never gate a version twice), and
        a pin made while the gate was measuring wins over the gate's promotion."""
        async with self._syncing:
            await self._sync()

    async def _sync(self) -> None:
        if not self.following:
            return
        manifest = await asyncio.to_thread(self.registry.read_manifest)
        target = manifest.current if manifest else None
        if target is None or target == self.current or target in self.rejected:
            return
        entry = manifest.entry(target)
        if entry is not None and entry.blocked:
            self.rejected[target] = f"{entry.gate['verdict']}: {_why(entry.gate)}"
            return
        ungated = self.gate is not None and (entry is None or entry.gate is None)
        if ungated and not await self._gate(target):
            return
        if not self.following:  # pinned while the gate measured: the verdict stays recorded
            return
        with contextlib.suppress(AdapterRejected):
            await self.activate(target)

    async def _gate(self, version: str) -> bool:
        """Load ``version`` in shadow, evaluate it, record the verdict; True: promote."""
        try:
            candidate = self.loaded.get(version) or await self._load(version)
        except AdapterRejected:
            return False
        serving = self.policy.current
        verdict = await self.gate(candidate, serving)  # type: ignore[misc]
        revert = serving.version if serving else None
        await asyncio.to_thread(self.registry.record_verdict, version, verdict, revert_to=revert)
        self.history.append({"version": version, "at": time.time(), "event": verdict["verdict"]})
        if verdict["verdict"] == "promoted":
            return True
        self.rejected[version] = f"rejected_by_gate: {_why(verdict)}"
        metrics.ADAPTER_REJECTED.labels("gate").inc()
        log.warning("adapter %s rejected by the gate: %s", version, _why(verdict))
        self._evict_stale()
        return False

    async def roll_back_automatically(self, version: str, bounds: list[str], report: dict) -> str:
        """A monitor saw ``version`` cross ``bounds``: serve the previous version again, keep
        following, and never serve ``version`` again. Returns the version now served."""
        async with self._lock:
            if self.current != version or self.previous is None:
                return self.current or "base"
        target = self.previous
        await self.activate(target)
        self.previous = None  # the rolled-back version is not a rollback target
        verdict = {
            "verdict": "rolled_back_by_monitor",
            "version": version,
            "against": target,
            "at": time.time(),
            "reasons": [f"canary {name} crossed its bound" for name in bounds],
            "monitor": report,
        }
        self.rejected[version] = f"rolled_back_by_monitor: {_why(verdict)}"
        await asyncio.to_thread(self.registry.record_verdict, version, verdict, revert_to=target)
        event = {"version": version, "to": target, "at": time.time(), "bounds": bounds}
        self.rollbacks.append(event)
        self.history.append({"version": version, "at": time.time(), "event": "rolled_back"})
        for name in bounds:
            metrics.MONITOR_ROLLBACKS.labels(name).inc()
        log.warning("monitor rolled back %s -> %s (crossed: %s)", version, target, bounds)
        self._evict_stale()
        return target

    async def activate(self, version: str) -> Adapter:
        """Validate, load and switch drafts to ``version``; ``AdapterRejected`` if it fails."""
        async with self._lock:
            if version == self.current:
                return self.policy.current  # type: ignore[return-value]
            started = time.perf_counter()
            adapter = self.loaded.get(version) or await self._load(version)
            old = self.policy.swap(adapter)
            self.previous = old.version if old else self.previous
            metrics.ADAPTER_SWAPS.inc()
            metrics.ADAPTER_SWAP_LATENCY.observe(time.perf_counter() - started)
            metrics.ADAPTER_INFO.info({"version": version, "name": adapter.name})
            self.history.append({"version": version, "at": time.time(), "event": "swapped"})
            log.info("drafts now use adapter %s (previous: %s)", version, self.previous)
            self._evict_stale()
            return adapter

    async def _load(self, version: str) -> Adapter:
        problems = await asyncio.to_thread(
            self.registry.validate_version, version, self.base, self.max_rank
        )
        if problems:
            self._reject(version, _reason(problems), "; ".join(problems))
        int_id = next(_ADAPTER_IDS)
        adapter = Adapter(
            name=f"policy@{version}#{int_id}",
            version=version,
            path=self.registry.version_dir(version).resolve(),
            int_id=int_id,
        )
        try:
            await self.engine.load_adapter(adapter)
        except ConscienceError as exc:
            self._reject(version, "load_failed", exc.message)
        except Exception as exc:  # vLLM raises plain errors for bad adapter files
            self._reject(version, "load_failed", f"{type(exc).__name__}: {exc}")
        self.loaded[version] = adapter
        return adapter

    def _reject(self, version: str, reason: str, detail: str) -> None:
        self.rejected[version] = detail
        metrics.ADAPTER_REJECTED.labels(reason).inc()
        self.history.append({"version": version, "at": time.time(), "event": f"rejected: {detail}"})
        log.warning("adapter %s rejected (%s): %s", version, reason, detail)
        raise AdapterRejected(f"Adapter {version} rejected: {detail}", param="version")

    def _evict_stale(self) -> None:
        keep = {self.current, self.previous}
        for version in [v for v in self.loaded if v not in keep]:
            adapter = self.loaded.pop(version)
            task = asyncio.create_task(self._evict(adapter))
            self._evictions.add(task)
            task.add_done_callback(self._evictions.discard)

    async def _evict(self, adapter: Adapter) -> None:
        await self.policy.wait_idle(adapter)
        await self.engine.unload_adapter(adapter)

    async def pin(self, version: str) -> Adapter:
        """Serve ``version`` and stop following the manifest."""
        manifest = await asyncio.to_thread(self.registry.read_manifest)
        if manifest is None or manifest.entry(version) is None:
            raise UnknownModel(
                f"Adapter version {version!r} is not in the registry.", param="version"
            )
        adapter = await self.activate(version)
        self.following = False
        return adapter

    async def follow(self) -> None:
        """Resume following the manifest."""
        self.following = True
        await self.sync()

    async def rollback(self) -> Adapter:
        """Pin the previous good version."""
        if self.previous is None:
            raise InvalidRequest("There is no previous adapter version to roll back to.")
        return await self.pin(self.previous)

    def resolve(self, version: str) -> Adapter:
        """A loaded version for per-request selection (404 if not loaded)."""
        try:
            return self.loaded[version]
        except KeyError:
            raise UnknownModel(
                f"Adapter version {version!r} is not loaded (loaded: {sorted(self.loaded)}).",
                param="model",
            ) from None

    async def status(self) -> AdapterStatus:
        manifest = await asyncio.to_thread(self.registry.read_manifest)
        return AdapterStatus(
            current=self.current,
            previous=self.previous,
            following=self.following,
            manifest_current=manifest.current if manifest else None,
            loaded=sorted(self.loaded),
            history=self.history[-50:],
            rejected=self.rejected,
            gate_enabled=self.gate is not None,
            verdicts=_verdicts(manifest),
            rollbacks=self.rollbacks[-50:],
            monitor=self.monitor,
        )


def _verdicts(manifest: Manifest | None) -> dict[str, dict]:
    return {v.version: v.gate for v in manifest.versions if v.gate} if manifest else {}


def _why(verdict: dict) -> str:
    return "; ".join(verdict.get("reasons") or []) or verdict.get("verdict", "")


def _reason(problems: list[str]) -> str:
    text = " ".join(problems)
    if "trained on base" in text:
        return "base_mismatch"
    if "rank" in text:
        return "rank_too_high"
    if "not listed" in text:
        return "unlisted"
    return "invalid_files"
