"""Ethical frameworks as data: built-in YAML files plus an operator's directory of their own.

Each framework carries a version and a hash of everything that reaches the judge, so a
pair in the queue says exactly which prompt produced its verdict.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.conscience.labels import BUILTIN_LABEL_SETS, LabelSet
from app.errors import UnknownFramework

BUILTIN_PACKAGE = "app.conscience.framework_data"


class Framework(BaseModel):
    """One ethical framework: principles, review question, answer labels, rewrite instruction.

    ``labels`` names a built-in label set (``yes_no``, ``safe_unsafe``, ``ethical3``) or
    defines one inline (``name``, ``options`` of ``word`` + ``verdict``, ``instruction``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_][a-z0-9_.-]{0,63}$")
    version: str = Field(min_length=1, max_length=32)
    title: str = ""
    principles: list[str] = Field(min_length=1)
    review_question: str = Field(min_length=10)
    labels: str | LabelSet = "ethical3"
    rewrite_instruction: str = Field(min_length=10)

    @field_validator("labels")
    @classmethod
    def _known_label_set(cls, value: str | LabelSet) -> str | LabelSet:
        if isinstance(value, str) and value not in BUILTIN_LABEL_SETS:
            raise ValueError(
                f"unknown label set {value!r} (built in: {sorted(BUILTIN_LABEL_SETS)})"
            )
        return value

    @property
    def label_set(self) -> LabelSet:
        """The label set the judge answers with."""
        if isinstance(self.labels, LabelSet):
            return self.labels
        return BUILTIN_LABEL_SETS[self.labels]

    @property
    def prompt_hash(self) -> str:
        """Short sha256 of the fields that reach the judge (the label set included)."""
        payload = self.model_dump(include={"principles", "review_question", "rewrite_instruction"})
        payload["labels"] = self.label_set.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return digest[:16]

    def principles_text(self) -> str:
        """The principles as a numbered list."""
        return "\n".join(f"{i}. {p}" for i, p in enumerate(self.principles, 1))


class FrameworkError(ValueError):
    """A framework file could not be read."""


def load_framework_file(path: Path) -> Framework:
    """Parse one YAML framework file, naming the file in any error."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Framework.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise FrameworkError(f"{path}: {exc}") from exc


class FrameworkCatalog:
    """The frameworks a server offers, by name."""

    def __init__(self, frameworks: dict[str, Framework]):
        self._frameworks = dict(frameworks)

    @classmethod
    def load(cls, user_dir: Path | None = None) -> FrameworkCatalog:
        """Built-ins, overridden or extended by ``*.yaml``/``*.yml`` files in ``user_dir``."""
        found: dict[str, Framework] = {}
        for entry in resources.files(BUILTIN_PACKAGE).iterdir():
            if entry.name.endswith(".yaml"):
                fw = Framework.model_validate(yaml.safe_load(entry.read_text(encoding="utf-8")))
                found[fw.name] = fw
        if user_dir is not None:
            if not user_dir.is_dir():
                raise FrameworkError(f"{user_dir}: frameworks directory does not exist")
            for path in sorted([*user_dir.glob("*.yaml"), *user_dir.glob("*.yml")]):
                fw = load_framework_file(path)
                found[fw.name] = fw
        return cls(found)

    def names(self) -> list[str]:
        return sorted(self._frameworks)

    def get(self, name: str) -> Framework:
        """The framework called ``name``; ``UnknownFramework`` (a 400) otherwise."""
        try:
            return self._frameworks[name]
        except KeyError:
            raise UnknownFramework(name, self.names()) from None
