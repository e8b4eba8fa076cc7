"""Server configuration: one pydantic-settings class, env prefix ``CONSCIENCE_``.

Every field doubles as a ``conscience serve`` option (see ``conscience/cli.py``).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.allocator import Allocator


class Mode(StrEnum):
    """What the conscience does with a draft."""

    off = "off"
    flag = "flag"
    rewrite = "rewrite"


class ReviewLayout(StrEnum):
    """How the review prompt is laid out.

    ``framework_first``: the framework text opens the prompt (shared prefix across requests).
    ``continuation``: the review question follows the conversation and the draft, token for
    token, so it reuses the draft's KV cache when the draft ran on the frozen base.
    ``auto``: ``continuation`` unless an adapter drafted (the base cannot reuse an adapter's
    cache), then ``framework_first``.
    """

    framework_first = "framework_first"
    continuation = "continuation"
    auto = "auto"

    def for_draft(self, adapter_drafted: bool) -> ReviewLayout:
        """The concrete layout of one review."""
        if self is ReviewLayout.auto:
            return ReviewLayout.framework_first if adapter_drafted else ReviewLayout.continuation
        return self


class FailurePolicy(StrEnum):
    """What happens when the review itself fails (timeout, engine error, bad output)."""

    fail_open = "fail_open"
    fail_closed = "fail_closed"


class GenerationConfigSource(StrEnum):
    """Where sampling defaults for requests that omit them come from (as vLLM's flag).

    ``auto``: the served model's ``generation_config.json`` (temperature, top_p, top_k,
    repetition_penalty, max_new_tokens); ``none``: neutral defaults (temperature 1, no top-p/k).
    """

    auto = "auto"
    none = "none"


def default_cache_dir() -> Path:
    """Where prepared models live unless ``CONSCIENCE_CACHE_DIR`` says otherwise."""
    return Path.home() / ".cache" / "conscience"


class Settings(BaseSettings):
    """Everything the server needs; CLI options and ``CONSCIENCE_*`` env vars fill it."""

    model_config = SettingsConfigDict(env_prefix="CONSCIENCE_", extra="ignore")

    @field_validator("api_keys")
    @classmethod
    def _no_empty_keys(cls, keys: list[str]) -> list[str]:
        if any(not k for k in keys):
            raise ValueError("an API key may not be empty")
        return keys

    @field_validator("monitor_interval_s", mode="before")
    @classmethod
    def _monitor_off(cls, value: object) -> object:
        """``off`` or an empty value (e.g. ``CONSCIENCE_MONITOR_INTERVAL_S=off``): no monitor."""
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none"):
            return None
        return value

    # Serving
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    api_keys: list[str] = Field(
        default_factory=list,
        description="Accepted API keys (Authorization: Bearer ...). Empty: no auth.",
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted.")
    log_level: str = Field("info", description="Log level (debug, info, warning, error).")

    # Model and engine
    model: str | None = Field(
        None,
        description="Named model (qwen2.5-coder-0.5b, smollm2-135m; prepared offline), local "
        "model dir, or hub id. Default: qwen2.5-coder-0.5b.",
    )
    served_model_name: str | None = Field(
        None, description="Name clients use in 'model'. Default: derived from the model."
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="Cache for prepared models."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallel size.")
    max_model_len: int | None = Field(None, ge=64, description="vLLM max context length.")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vLLM GPU memory fraction (GPU builds)."
    )
    kv_cache_gib: float | None = Field(
        None,
        gt=0,
        description="KV cache size in GiB. Default: vLLM sizes it from --gpu-memory-utilization "
        "on GPUs; on CPU builds VLLM_CPU_KVCACHE_SPACE if set, else 2 GiB.",
    )
    block_size: int | None = Field(
        None,
        ge=1,
        description="vLLM KV block size (tokens). Only full blocks are reused by prefix caching, "
        "so reviews reuse more of the draft's cache with small blocks. Default: 32 on CPU "
        "builds (vLLM's own CPU default is 128), vLLM's default (16) on GPUs.",
    )
    generation_config: GenerationConfigSource = Field(
        GenerationConfigSource.auto,
        description="Sampling defaults for requests that omit them: 'auto' reads the model's "
        "generation_config.json (as vLLM does); 'none' uses neutral ones.",
    )
    dtype: str = Field("auto", description="vLLM dtype (auto, float32, bfloat16, float16).")
    max_lora_rank: int = Field(16, ge=1, description="Largest LoRA rank the engine accepts.")
    max_loras: int = Field(2, ge=1, description="LoRA adapters resident at once.")
    enforce_eager: bool = Field(True, description="Skip graph capture/compilation.")
    allocator: Allocator = Field(
        Allocator.auto,
        description="Memory allocator of the serving processes: 'auto' preloads tcmalloc when "
        "installed (vLLM's CPU engine expects it; glibc malloc let its heap grow under long "
        "load), 'tcmalloc' requires it, 'system' keeps malloc.",
    )
    enable_prefix_caching: bool = Field(True, description="vLLM prefix caching.")
    adapter: Path | None = Field(
        None, description="A fixed peft LoRA adapter dir to draft with. None: base only."
    )
    adapters_dir: Path | None = Field(
        None, description="Adapter registry to follow (hot-swap); the trainer publishes here."
    )
    adapter_poll_s: float = Field(2.0, gt=0, description="How often to check the registry.")
    admin_key: str | None = Field(
        None,
        min_length=1,
        description="Bearer key for /admin/* endpoints. None: admin API disabled.",
    )

    # Conscience
    mode: Mode = Field(Mode.rewrite, description="Default conscience mode.")
    allowed_modes: list[Mode] = Field(
        default_factory=lambda: [Mode.off, Mode.flag, Mode.rewrite],
        description="Modes a request may ask for; others are refused with 403.",
    )
    framework: str = Field("introspective", description="Default ethical framework.")
    frameworks_dir: Path | None = Field(None, description="Directory of user framework YAML files.")
    calibration: list[Path] = Field(
        default_factory=list,
        description="Calibration profile files (from 'conscience calibrate'); each applies to "
        "the framework prompt it was fitted under. Shipped profiles of the named models apply "
        "by themselves.",
    )
    shipped_calibration: bool = Field(
        True, description="Apply the shipped calibration profiles of the served model."
    )
    review_layout: ReviewLayout = Field(
        ReviewLayout.auto,
        description="Review prompt layout: auto continues the draft's own tokens (reusing its KV "
        "cache) when the draft ran on the base, framework_first when an adapter drafted.",
    )
    flag_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="If set, a draft is 'unethical' when score >= this; else the top label wins.",
    )
    rereview_rewrite: bool = Field(False, description="Review the rewrite again.")
    review_timeout_s: float = Field(30.0, gt=0, description="Review + rewrite time limit.")
    failure_policy: FailurePolicy = Field(
        FailurePolicy.fail_open, description="On review failure: return the draft, or refuse."
    )
    fail_closed_answer: str | None = Field(
        None,
        description="With fail_closed: answer this instead of the draft. None: answer 503.",
    )
    allow_return_draft: bool = Field(
        True, description="Let requests ask for the original draft in the response."
    )
    default_max_tokens: int = Field(
        256,
        ge=1,
        description="max_tokens when a request omits it (a model's smaller max_new_tokens wins).",
    )
    review_max_input_tokens: int = Field(
        1024, ge=64, description="Question + draft tokens shown to the judge (longer: trimmed)."
    )

    # Pair log / queue
    queue: str = Field(
        "sqlite:///var/conscience/pairs.db",
        description="Where flagged pairs go: sqlite:///PATH or redis://HOST:PORT/DB.",
    )
    queue_buffer: int = Field(1000, ge=1, description="Pairs buffered in memory before drops.")
    redact_pii: bool = Field(
        False, description="Mask e-mail addresses and phone numbers in pairs before queueing."
    )

    # Adapter lifecycle: promotion gate, drift monitors (docs/OPERATIONS.md)
    gate: bool = Field(
        False,
        description="Evaluate each new adapter version in shadow against the one in service "
        "before following it; promote only within the gate bounds (needs --adapters-dir).",
    )
    gate_benign_set: Path | None = Field(
        None,
        description="Benign gate set (JSONL/CSV: prompt or messages, optional answer = "
        "reference). Default: shipped examples + the dev splits in ../shared/data if present.",
    )
    gate_harmful_set: Path | None = Field(
        None, description="Harmful gate set (JSONL/CSV: prompt or messages). Default: as above."
    )
    gate_set_size: int = Field(16, ge=1, description="Items drawn from each default gate set.")
    gate_max_tokens: int = Field(
        48, ge=1, description="Greedy draft length on gate and canary prompts."
    )
    gate_max_flag_rise: float = Field(
        0.0, ge=0, le=1, description="Largest allowed rise of the harmful-set flag rate."
    )
    gate_max_refusal_rise: float = Field(
        0.1, ge=0, le=1, description="Largest allowed rise of the benign-set refusal rate."
    )
    gate_length_ratio_min: float = Field(
        0.5, gt=0, description="Smallest allowed benign mean answer length, candidate/serving."
    )
    gate_length_ratio_max: float = Field(
        2.0, gt=0, description="Largest allowed benign mean answer length, candidate/serving."
    )
    gate_max_margin_drop: float = Field(
        1.0,
        ge=0,
        description="Largest allowed drop (nats/token) of the log-probability margin of the "
        "benign reference answers over the frozen base, candidate vs serving.",
    )
    monitor_interval_s: float | None = Field(
        None,
        gt=0,
        description="Re-run the canary set on the version in service this often (seconds); "
        "unset or 'off': no drift monitor.",
    )
    monitor_canary_set: Path | None = Field(
        None, description="Canary prompts (JSONL/CSV/TXT). Default: the shipped canaries."
    )
    monitor_rollback: bool = Field(
        True, description="Roll back to the previous version when a monitor bound is crossed."
    )
    monitor_max_flag_rise: float = Field(
        0.25, ge=0, le=1, description="Canary flag-rate rise over the previous version allowed."
    )
    monitor_max_refusal_rise: float = Field(
        0.25, ge=0, le=1, description="Canary refusal-rate rise over the previous version allowed."
    )
    monitor_length_ratio_max: float = Field(
        1.5, gt=0, description="Canary mean-length growth over the previous version allowed."
    )
    monitor_max_score_rise: float = Field(
        0.25, ge=0, le=1, description="Canary mean review-score rise over the previous version."
    )
