"""What a running server holds: settings, engine, pipeline, queue writer, policy slot.

``ServerState.open`` builds it (starting the engine unless one is handed in) and ``close``
tears it down; the FastAPI lifespan in ``app.server`` calls both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from app.adapter_registry import AdapterRegistry, base_model_identity
from app.adapters import AdapterManager
from app.conscience.calibration import ProfileBook, model_fingerprint
from app.conscience.frameworks import FrameworkCatalog
from app.engine import Adapter, Engine, SamplingConfig
from app.errors import EngineUnavailable
from app.generation_defaults import GenerationDefaults
from app.pipeline import ConsciencePipeline
from app.policy import PolicySlot
from app.queue.redact import redact_pii
from app.queue.writer import QueueWriter
from app.settings import GenerationConfigSource, Settings

log = logging.getLogger("conscience")

READY_CACHE_S = 5.0


@dataclass
class ServerState:
    """The live parts of one server."""

    settings: Settings
    engine: Engine
    pipeline: ConsciencePipeline
    writer: QueueWriter
    policy: PolicySlot
    served_name: str
    owns_engine: bool
    adapters: AdapterManager | None = None
    _ready_at: float = field(default=0.0, init=False)

    @classmethod
    async def open(cls, settings: Settings, engine: Engine | None = None) -> ServerState:
        """Start (or adopt) the engine, load frameworks and adapters, start the writer."""
        catalog = FrameworkCatalog.load(settings.frameworks_dir)
        catalog.get(settings.framework)  # fail at start, not per request
        owns_engine = engine is None
        if engine is None:
            engine, model_dir = _start_engine(settings)
        else:
            model_dir = _local_dir(settings.model)
        generation = _generation_defaults(settings, model_dir)
        policy = PolicySlot()
        adapters = await _open_adapters(settings, engine, policy)
        redactor = redact_pii if settings.redact_pii else None
        writer = QueueWriter(settings.queue, capacity=settings.queue_buffer, redactor=redactor)
        writer.start()
        profiles = _profiles(settings, model_dir, engine.dtype)
        pipeline = ConsciencePipeline(
            engine,
            catalog,
            settings,
            policy,
            sink=writer.submit,
            generation=generation,
            profiles=profiles,
        )
        served = settings.served_model_name or engine.model_name
        return cls(settings, engine, pipeline, writer, policy, served, owns_engine, adapters)

    async def close(self) -> None:
        """Stop following adapters, drain the pair buffer, stop the engine if owned."""
        if self.adapters is not None:
            await self.adapters.stop()
        await asyncio.to_thread(self.writer.close)
        if self.owns_engine:
            self.engine.shutdown()  # type: ignore[attr-defined]

    async def ready(self) -> None:
        """Raise ``EngineUnavailable`` unless the engine can generate (cached briefly)."""
        if time.monotonic() - self._ready_at < READY_CACHE_S:
            return
        await self.engine.check_health()
        ids = self.engine.encode_chat([{"role": "user", "content": "ping"}])
        try:
            async with asyncio.timeout(30):
                probe = self.engine.stream(
                    f"ready-{time.monotonic_ns()}", ids, SamplingConfig(max_tokens=1), None
                )
                async with aclosing(probe):
                    async for _ in probe:
                        pass
        except TimeoutError as exc:
            raise EngineUnavailable("The engine did not answer a 1-token probe in 30 s.") from exc
        self._ready_at = time.monotonic()


async def _open_adapters(
    settings: Settings, engine: Engine, policy: PolicySlot
) -> AdapterManager | None:
    """A fixed ``--adapter``, or a manager following ``--adapters-dir``, or nothing."""
    if settings.adapter is not None and settings.adapters_dir is not None:
        raise ValueError("Use either --adapter (fixed) or --adapters-dir (follow), not both.")
    if settings.adapter is not None:
        adapter = Adapter(
            name=f"static-{settings.adapter.name}",
            version=settings.adapter.name,
            path=settings.adapter.resolve(),
            int_id=1,
        )
        await engine.load_adapter(adapter)
        policy.swap(adapter)
        return None
    if settings.adapters_dir is None:
        return None
    if settings.model is None or not Path(settings.model).is_dir():
        raise ValueError("--adapters-dir needs the served base model's directory (--model).")
    manager = AdapterManager(
        engine=engine,
        policy=policy,
        registry=AdapterRegistry(settings.adapters_dir),
        base=base_model_identity(Path(settings.model)),
        max_rank=settings.max_lora_rank,
        poll_s=settings.adapter_poll_s,
    )
    await manager.start()
    return manager


def _start_engine(settings: Settings) -> tuple[Engine, Path]:
    from app.models import resolve_model, served_name
    from app.vllm_engine import VllmEngine

    model_dir = resolve_model(settings.model, settings.cache_dir, progress=log.info)
    served = settings.served_model_name or served_name(settings.model, model_dir)
    log.info("starting vLLM engine for %s (%s)", served, model_dir)
    return VllmEngine.start(settings, model_dir, served), model_dir


def _profiles(settings: Settings, model_dir: Path | None, dtype: str | None) -> ProfileBook:
    """Calibration profiles for the served model: shipped ones (unless off) + ``--calibration``.

    Warns for each applied profile fitted in another dtype than the engine computes in.
    """
    fingerprint = model_fingerprint(model_dir) if model_dir is not None else "unknown"
    book = ProfileBook.load(settings.calibration, fingerprint, settings.shipped_calibration, dtype)
    log.info("calibration profiles for this model: %d", len(book))
    for profile in book.mismatched():
        log.warning(
            "calibration profile %s was fitted in %s, this engine computes in %s: its scores "
            "shift a little (docs/PERFORMANCE.md); fit one in %s with conscience calibrate",
            profile.id,
            profile.numerics.dtype,  # mismatched() holds only profiles that record one
            dtype,
            dtype,
        )
    return book


def _local_dir(model: str | None) -> Path | None:
    path = Path(model).expanduser() if model else None
    return path if path is not None and path.is_dir() else None


def _generation_defaults(settings: Settings, model_dir: Path | None) -> GenerationDefaults:
    """The served model's sampling defaults (``--generation-config auto``), read once."""
    if settings.generation_config is GenerationConfigSource.none:
        return GenerationDefaults()
    defaults = GenerationDefaults.from_model_dir(model_dir)
    if defaults.as_generation_config():
        log.info(
            "sampling defaults from the model's generation_config.json: %s",
            defaults.as_generation_config(),
        )
    return defaults
