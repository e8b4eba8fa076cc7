"""The conscience in process: one vLLM engine plus the server's own pipeline, without HTTP.

``conscience eval em`` and ``conscience finetune`` judge and rewrite with exactly the code the
server runs (``app.pipeline.ConsciencePipeline``: frameworks, prompts, calibration profiles,
verdicts), on the frozen base of an engine they start themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine import Adapter, Engine
from app.pipeline import ConsciencePipeline, PairSink
from app.settings import Settings


@dataclass
class InProcess:
    """A started engine, the pipeline over it and where the model lives."""

    engine: Engine
    pipeline: ConsciencePipeline
    model_dir: Path
    settings: Settings


def conscience_settings(model: str | None, **overrides: Any) -> Settings:
    """Server settings for an in-process conscience (options left None keep their defaults)."""
    return Settings(model=model, **{k: v for k, v in overrides.items() if v is not None})


@asynccontextmanager
async def in_process(
    settings: Settings,
    adapters: Sequence[Adapter] = (),
    sink: PairSink | None = None,
    report=print,
) -> AsyncIterator[InProcess]:
    """Start the engine for ``settings.model``, load ``adapters``, build the pipeline
    (its rewritten pairs go to ``sink``)."""
    from app.conscience.calibration import ProfileBook, model_fingerprint
    from app.conscience.frameworks import FrameworkCatalog
    from app.generation_defaults import GenerationDefaults
    from app.models import resolve_model, served_name
    from app.policy import PolicySlot
    from app.vllm_engine import VllmEngine

    catalog = FrameworkCatalog.load(settings.frameworks_dir)
    catalog.get(settings.framework)  # unknown framework: fail before the engine starts
    model_dir = resolve_model(settings.model, settings.cache_dir, report)
    name = served_name(settings.model, model_dir)
    engine = VllmEngine.start(settings, model_dir, name)
    try:
        for adapter in adapters:
            await engine.load_adapter(adapter)
        profiles = ProfileBook.load(
            settings.calibration,
            model_fingerprint(model_dir),
            settings.shipped_calibration,
            engine.dtype,
        )
        pipeline = ConsciencePipeline(
            engine,
            catalog,
            settings,
            PolicySlot(),
            sink=sink,
            generation=GenerationDefaults.from_model_dir(model_dir),
            profiles=profiles,
        )
        yield InProcess(engine, pipeline, model_dir, settings)
    finally:
        engine.shutdown()
