"""Calibration profiles: what turns the judge's raw label probability into a trusted decision.

A profile is fitted on dev data by ``conscience calibrate`` for one model and one framework
(its prompt hash), and holds: a Platt scaling of the question's raw score, an optional linear
read-out over the frozen model's first-token log-probabilities (the same review pass, no
extra cost), which of the two decides, and the decision threshold chosen at a target
false-positive rate. Profiles are JSON, versioned and hashed; every response names the
profile it was judged under. Only the standard library and pydantic here: the server
applies profiles, fitting lives in ``app.conscience.fit``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from app.conscience.labels import MAX_SCORED_TOKENS

PROFILE_FORMAT = 1
SHIPPED_PACKAGE = "app.conscience.profiles"
LOGPROB_FLOOR = -30.0
_EPS = 1e-6


class CalibrationError(ValueError):
    """A calibration profile cannot be read or does not fit this model."""


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1 / (1 + math.exp(-z))
    e = math.exp(z)
    return e / (1 + e)


class Platt(BaseModel):
    """P(harmful) = sigmoid(slope · logit(raw) + intercept)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, raw: float) -> float:
        return _sigmoid(self.slope * _logit(raw) + self.intercept)


class Readout(BaseModel):
    """A logistic read-out over the log-probabilities of chosen first tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_ids: list[int] = Field(min_length=1, max_length=MAX_SCORED_TOKENS)
    tokens: list[str] = Field(description="Each id's text, checked against the tokenizer.")
    mean: list[float]
    scale: list[float]
    weights: list[float]
    intercept: float

    @model_validator(mode="after")
    def _same_lengths(self) -> Readout:
        n = len(self.token_ids)
        if not all(len(v) == n for v in (self.tokens, self.mean, self.scale, self.weights)):
            raise ValueError("token_ids, tokens, mean, scale and weights need equal lengths")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scale must be positive")
        return self

    def probability(self, logprobs: Mapping[int, float]) -> float:
        """P(harmful) from the first-token log-probabilities of ``token_ids``."""
        z = self.intercept
        for tid, mu, sd, w in zip(self.token_ids, self.mean, self.scale, self.weights, strict=True):
            z += w * (features_value(logprobs, tid) - mu) / sd
        return _sigmoid(z)


def features_value(logprobs: Mapping[int, float], token_id: int) -> float:
    """A token's log-probability as a read-out feature (missing or -inf → the floor)."""
    value = logprobs.get(token_id, LOGPROB_FLOOR)
    return max(value, LOGPROB_FLOOR) if not math.isnan(value) else LOGPROB_FLOOR


class DevFigures(BaseModel):
    """What the profile achieved on its own (cross-validated) dev predictions."""

    auroc_question: float | None = None
    auroc_readout: float | None = None
    auroc_readout_by_source: float | None = Field(
        None, description="The read-out's AUROC with each source of the dev rows held out."
    )
    ece: float | None = None
    fpr: float | None = Field(None, description="False-positive rate at the threshold.")
    tpr: float | None = Field(None, description="True-positive rate at the threshold.")
    ece_by_source: float | None = Field(
        None, description="ECE of the read-out's predictions for each source held out."
    )
    softening: Platt | None = Field(
        None,
        description="The map (slope <= 1) fitted on those held-out-source predictions and "
        "folded into the read-out, so its probabilities hold on data of an unseen kind.",
    )

    @model_serializer(mode="wrap")
    def _omit_absent_additions(self, handler: SerializerFunctionWrapHandler) -> dict:
        # figures added after profiles shipped are left out when absent, so the JSON (and the
        # digest) of a profile fitted without them stays what it was
        data = handler(self)
        for key in ("ece_by_source", "softening"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class FittedOn(BaseModel):
    """The data a profile was fitted on (dev data only)."""

    dataset: str
    digest: str
    harmful: int = Field(ge=1)
    benign: int = Field(ge=1)


class Numerics(BaseModel):
    """The arithmetic a profile's features were computed in.

    The same weights score a little differently in another dtype (on Qwen2.5-Coder-0.5B,
    float32 against bfloat16 moved 6 of 60 dev decisions: docs/PERFORMANCE.md), so a server
    prefers the profile fitted in its own dtype and warns when it has none.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: str = Field(description="The engine's dtype: bfloat16, float32 or float16.")
    device: str = Field("", description="Where the features were computed (informative).")


class CalibrationProfile(BaseModel):
    """One model and one framework: calibration, optional read-out, decision threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = PROFILE_FORMAT
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    model: str = Field(description="Fingerprint of the model it was fitted on (model_fingerprint).")
    model_name: str = ""
    framework: str
    review_prompt_hash: str = Field(description="The exact review prompt it was fitted under.")
    decision: Literal["question", "readout"] = "question"
    question: Platt = Platt()
    readout: Readout | None = None
    threshold: float = Field(ge=0, le=1, description="Flag when the decision score >= this.")
    target_fpr: float = Field(ge=0, le=1)
    fitted_on: FittedOn
    dev: DevFigures = DevFigures()
    numerics: Numerics | None = Field(None, description="None: not recorded (older profiles).")

    @model_serializer(mode="wrap")
    def _omit_unrecorded_numerics(self, handler: SerializerFunctionWrapHandler) -> dict:
        # profiles fitted before numerics were recorded keep their JSON and digest
        data = handler(self)
        if data.get("numerics") is None:
            data.pop("numerics", None)
        return data

    @model_validator(mode="after")
    def _readout_when_deciding(self) -> CalibrationProfile:
        if self.decision == "readout" and self.readout is None:
            raise ValueError("decision 'readout' needs a readout")
        return self

    @property
    def digest(self) -> str:
        """Short sha256 of the profile's canonical JSON."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def id(self) -> str:
        """``name@digest``: what responses report."""
        return f"{self.name}@{self.digest}"


def load_profile(path: Path) -> CalibrationProfile:
    """Parse one profile file, naming the file in any error."""
    try:
        return CalibrationProfile.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise CalibrationError(f"{path}: {exc}") from exc


def save_profile(profile: CalibrationProfile, path: Path) -> None:
    """Write a profile as indented JSON, each list on one line."""
    text = json.dumps(profile.model_dump(mode="json"), indent=1, ensure_ascii=False)
    text = re.sub(r"\[[^\[\]{}]*\]", lambda m: " ".join(m.group(0).split()), text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def shipped_profiles() -> list[CalibrationProfile]:
    """The profiles that ship with the package (fitted on ../shared/data dev sets)."""
    found = []
    for entry in sorted(resources.files(SHIPPED_PACKAGE).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            found.append(CalibrationProfile.model_validate_json(entry.read_text("utf-8")))
    return found


def model_fingerprint(model_dir: Path) -> str:
    """Short sha256 of a model's ``config.json`` (volatile bookkeeping keys left out)."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    for key in ("transformers_version", "_name_or_path", "name_or_path", "torch_dtype", "dtype"):
        config.pop(key, None)
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ProfileBook:
    """The profiles a server applies, by framework, for the model it serves.

    Where several profiles fit one review prompt, the one fitted in the engine's ``dtype``
    wins, then one that does not record its dtype, then any other (see ``mismatched``).
    """

    def __init__(
        self,
        profiles: Iterable[CalibrationProfile],
        fingerprint: str,
        dtype: str | None = None,
    ):
        self.fingerprint = fingerprint
        self.dtype = dtype
        self._by_prompt: dict[str, CalibrationProfile] = {}
        for profile in profiles:
            if profile.model != fingerprint:
                continue
            held = self._by_prompt.get(profile.review_prompt_hash)
            if held is None or self._rank(profile) <= self._rank(held):
                self._by_prompt[profile.review_prompt_hash] = profile

    def _rank(self, profile: CalibrationProfile) -> int:
        """0: fitted in this dtype (or the dtype is unknown), 1: not recorded, 2: another."""
        if profile.numerics is None:
            return 1
        return 0 if self.dtype is None or profile.numerics.dtype == self.dtype else 2

    @classmethod
    def load(
        cls,
        files: Iterable[Path],
        fingerprint: str,
        shipped: bool = True,
        dtype: str | None = None,
    ) -> ProfileBook:
        """Shipped profiles (unless ``shipped`` is off), overridden by ``files``.

        Each of ``files`` must have been fitted on this model; among profiles that rank the
        same for ``dtype``, a file given later wins over an earlier one and over shipped ones.
        """
        own = [load_profile(p) for p in files]
        for profile in own:
            if profile.model != fingerprint:
                raise CalibrationError(
                    f"calibration profile {profile.name!r} was fitted on model "
                    f"{profile.model_name or profile.model} (fingerprint {profile.model}), "
                    f"not on the served model (fingerprint {fingerprint})"
                )
        return cls([*(shipped_profiles() if shipped else []), *own], fingerprint, dtype)

    def for_prompt(self, review_prompt_hash: str) -> CalibrationProfile | None:
        """The profile fitted under exactly this review prompt, if any."""
        return self._by_prompt.get(review_prompt_hash)

    def mismatched(self) -> list[CalibrationProfile]:
        """Applied profiles fitted in another dtype than the engine's."""
        return [p for p in self._by_prompt.values() if self._rank(p) == 2]

    def __len__(self) -> int:
        return len(self._by_prompt)
