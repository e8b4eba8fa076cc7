"""A model's recommended sampling defaults, read once from its ``generation_config.json``.

vLLM's own server does the same with ``--generation-config auto``
(``ModelConfig.get_diff_sampling_param``): the model's values fill every sampling field a
request leaves out; a request's own value always wins. As there, a value equal to
transformers' own default (e.g. ``top_k: 50``) counts as not set. ``--generation-config none``
turns it off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GENERATION_CONFIG = "generation_config.json"
# transformers' GenerationConfig defaults: vLLM reads only the fields that differ from them.
HF_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 50,
    "repetition_penalty": 1.0,
    "max_new_tokens": None,
}
SamplingField = Literal["temperature", "top_p", "top_k", "repetition_penalty"]


class GenerationDefaults(BaseModel):
    """The sampling fields a model may recommend; ``None`` means 'not set by the model'."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    repetition_penalty: float | None = Field(None, gt=0)
    max_new_tokens: int | None = Field(None, ge=1)

    @classmethod
    def from_model_dir(cls, model_dir: Path | None) -> GenerationDefaults:
        """The defaults in ``model_dir/generation_config.json``; none when it is absent."""
        if model_dir is None or not (model_dir / GENERATION_CONFIG).is_file():
            return cls()
        path = model_dir / GENERATION_CONFIG
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            diff = {k: v for k, v in data.items() if k in HF_DEFAULTS and v != HF_DEFAULTS[k]}
            return cls.model_validate(diff)
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"Cannot read sampling defaults from {path}: {exc}") from exc

    def as_generation_config(self) -> dict[str, float | int]:
        """The fields that are set, as ``generation_config.json`` keys."""
        return self.model_dump(exclude_none=True)

    def pick(self, name: SamplingField, requested: float | None, neutral: float) -> Any:
        """The request's value, else the model's, else the neutral one."""
        if requested is not None:
            return requested
        value = getattr(self, name)
        return neutral if value is None else value

    def max_tokens(self, server_default: int) -> int:
        """max_tokens for a request that omits it: the model's, capped by the server's."""
        if self.max_new_tokens is None:
            return server_default
        return min(self.max_new_tokens, server_default)
