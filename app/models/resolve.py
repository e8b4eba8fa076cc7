"""Resolve ``--model`` to a local directory vLLM can serve.

``--model`` is a named offline model (``app.models.catalog``; prepared on first use), a local
model directory, or a Hugging Face hub id (where the hub is reachable). Omitted: the default
named model.
"""

from __future__ import annotations

from pathlib import Path

from app.models.catalog import CATALOG, DEFAULT_MODEL, ModelSourceError, find_model
from app.models.prepare import Report, prepare_model

HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]


def resolve_model(model: str | None, cache_dir: Path, progress: Report = print) -> Path:
    """A local directory for ``model`` (None: the default named model, prepared if needed)."""
    if model is None:
        return prepare_model(DEFAULT_MODEL, cache_dir, progress)
    named = find_model(model)
    if named is not None:
        return prepare_model(named, cache_dir, progress)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"{path} is not a model directory (no config.json).")
        return path.resolve()
    if path.exists() or model.startswith((".", "/", "~")):
        raise ModelSourceError(f"Model path {model!r} is not a directory.")
    return _download_hub_model(model, progress)


def served_name(model: str | None, model_dir: Path) -> str:
    """The name clients send in ``model``: a named model's name, a hub id, or the dir's name."""
    if model is None:
        return DEFAULT_MODEL.served_name
    named = find_model(model)
    if named is not None:
        return named.served_name
    return model if not Path(model).expanduser().is_dir() else model_dir.name


def _download_hub_model(repo_id: str, progress: Report) -> Path:
    from huggingface_hub import snapshot_download

    progress(f"Fetching {repo_id} from the Hugging Face hub ...")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except Exception as exc:
        names = ", ".join(entry.aliases[0] for entry in CATALOG if entry.aliases)
        raise ModelSourceError(
            f"Cannot fetch {repo_id!r} from the Hugging Face hub ({type(exc).__name__}); "
            f"it is not a named model either ({names}). Offline? Pass a local model directory "
            "with --model DIR, a named model, or leave --model out to serve the default."
        ) from exc
