"""The real engine: an in-process vLLM ``AsyncLLM``. The only module that imports vLLM.

One engine plays both roles: drafts run with the policy's LoRA adapter, reviews and rewrites
run with no adapter (the frozen base), at no extra memory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path

from app.conscience.labels import MAX_SCORED_TOKENS
from app.engine import Adapter, FirstToken, SamplingConfig, TextDelta
from app.engine_gate import EngineGate
from app.errors import ContextLengthExceeded, EngineUnavailable, ReviewOutputInvalid
from app.settings import Settings

CPU_DEFAULT_KV_GIB = 2.0
# Prefix caching reuses whole blocks only. vLLM's CPU default (128 tokens) leaves most of a
# review's reusable prefix uncached; 32 is the smallest size its CPU kernels are tuned for.
CPU_DEFAULT_BLOCK_SIZE = 32


def native_dtype(requested: str = "auto") -> str:
    """``requested``, except ``auto`` on a CPU without native bfloat16 becomes ``float32``.

    vLLM's CPU build resolves ``auto`` to bfloat16 (even for a float32 checkpoint); a CPU
    without AVX512-BF16/AMX (or Arm's bf16) emulates it: on an AVX2 EPYC, Qwen2.5-Coder-0.5B
    generated 10 tokens/s in bfloat16 and 35 in float32 (docs/PERFORMANCE.md).
    """
    if requested != "auto":
        return requested
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return requested
    return requested if _native_bf16() else "float32"


def _native_bf16() -> bool:
    import torch

    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return (
        torch.cpu._is_avx512_bf16_supported()
        or torch.cpu._is_amx_tile_supported()
        or bool(caps.get("bf16", False))
    )


def compute_device() -> str:
    """Where this machine's engine computes, in words (recorded beside fitted profiles)."""
    import torch
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return f"cpu ({'native' if _native_bf16() else 'no native'} bfloat16)"
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return str(current_platform.device_name)


def engine_args(settings: Settings, model_dir: Path, served_name: str):
    """vLLM engine arguments from the server settings (operator pass-throughs included)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform

    kv_gib = settings.kv_cache_gib
    if kv_gib is None and current_platform.is_cpu():
        # A fixed KV cache skips the CPU backend's "reserve 90% of RAM" startup check, which
        # fails on any machine where other processes hold memory. VLLM_CPU_KVCACHE_SPACE,
        # when set, still wins (vLLM applies it after these arguments).
        kv_gib = CPU_DEFAULT_KV_GIB
    block_size = settings.block_size
    if block_size is None and current_platform.is_cpu():
        block_size = CPU_DEFAULT_BLOCK_SIZE
    return AsyncEngineArgs(
        kv_cache_memory_bytes=int(kv_gib * 2**30) if kv_gib else None,
        block_size=block_size,
        model=str(model_dir),
        served_model_name=[served_name],
        tensor_parallel_size=settings.tensor_parallel_size,
        max_model_len=settings.max_model_len,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        dtype=native_dtype(settings.dtype),
        enable_lora=True,
        max_lora_rank=settings.max_lora_rank,
        max_loras=settings.max_loras,
        enforce_eager=settings.enforce_eager,
        enable_prefix_caching=settings.enable_prefix_caching,
        # vLLM 0.32's CPU build kills the engine ("CPU Generator does not use offset") when a
        # seeded sampling request's prefill is split over steps; whole prefills avoid it.
        enable_chunked_prefill=False if current_platform.is_cpu() else None,
        max_logprobs=MAX_SCORED_TOKENS,
    )


class VllmEngine:
    """``app.engine.Engine`` over vLLM's ``AsyncLLM``."""

    def __init__(self, llm, model_name: str):
        self._llm = llm
        self._tokenizer = llm.get_tokenizer()
        self._gate = EngineGate()  # prompt-logprob scoring runs alone (see app.engine_gate)
        self._special = frozenset(
            [
                *self._tokenizer.all_special_ids,
                *(i for i, t in self._tokenizer.added_tokens_decoder.items() if t.special),
            ]
        )
        self.model_name = model_name
        self.max_model_len: int = llm.model_config.max_model_len
        self.dtype: str | None = str(llm.model_config.dtype).removeprefix("torch.")

    @classmethod
    def start(cls, settings: Settings, model_dir: Path, served_name: str) -> VllmEngine:
        """Start the engine (spawns worker processes; takes seconds to tens of seconds)."""
        # vLLM drops torch to one thread unless this is set; prefill would run at half speed.
        os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        from vllm.v1.engine.async_llm import AsyncLLM

        llm = AsyncLLM.from_engine_args(engine_args(settings, model_dir, served_name))
        return cls(llm, served_name)

    def shutdown(self) -> None:
        self._llm.shutdown()
        # AsyncLLM.__del__ shuts down again. When the engine lives until interpreter exit (a
        # finished import frame can keep the frames that started it alive), that second call
        # runs after vLLM's module globals are cleared and prints a TypeError traceback under
        # the command's output. Once is enough.
        self._llm.shutdown = lambda timeout=None: None

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        return list(
            self._tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
            )
        )

    def token_count(self, text: str) -> int:
        return len(self.encode_text(text))

    def encode_text(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode_token(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id])

    def special_token_ids(self) -> frozenset[int]:
        return self._special

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self._tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= max_tokens:
            return text
        half = max(1, max_tokens // 2 - 4)
        head = self._tokenizer.decode(ids[:half])
        tail = self._tokenizer.decode(ids[-half:])
        return f"{head}\n[...]\n{tail}"

    async def stream(
        self,
        request_id: str,
        prompt_ids: list[int],
        sampling: SamplingConfig,
        adapter: Adapter | None,
    ) -> AsyncIterator[TextDelta]:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        params = SamplingParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            repetition_penalty=sampling.repetition_penalty,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            min_tokens=sampling.min_tokens,
            ignore_eos=sampling.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
        )
        finished = False
        tokens = 0
        outputs = self._generate(request_id, prompt_ids, params, adapter)
        try:
            async for out in outputs:
                piece = out.outputs[0]
                tokens += len(piece.token_ids)
                finished = out.finished
                reason = piece.finish_reason if finished else None
                cached = out.num_cached_tokens or 0
                yield TextDelta(piece.text, tokens, reason, tuple(piece.token_ids), cached)
        finally:
            await outputs.aclose()
            if not finished:
                await self._llm.abort(request_id)

    async def first_token_logprobs(
        self, request_id: str, prompt_ids: list[int], token_ids: Sequence[int]
    ) -> FirstToken:
        from vllm.sampling_params import SamplingParams

        params = SamplingParams(
            max_tokens=1, temperature=0.0, logprob_token_ids=list(dict.fromkeys(token_ids))
        )
        final = None
        async for out in self._generate(request_id, prompt_ids, params, None):
            final = out
        if final is None or not final.outputs[0].logprobs:
            raise ReviewOutputInvalid("the engine returned no logprobs for the review")
        first = final.outputs[0].logprobs[0]
        logprobs = {tid: entry.logprob for tid, entry in first.items()}
        return FirstToken(logprobs, final.num_cached_tokens or 0)

    async def score_answer(
        self,
        request_id: str,
        messages: Sequence[dict[str, str]],
        answer: str,
        adapter: Adapter | None,
    ) -> tuple[float, int]:
        from vllm.sampling_params import SamplingParams

        prompt_ids, answer_ids = self._split_answer(messages, answer)
        if not answer_ids:
            return 0.0, 0
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        final = None
        prompt = prompt_ids + answer_ids
        async for out in self._generate(request_id, prompt, params, adapter, exclusive=True):
            final = out
        positions = final.prompt_logprobs[len(prompt_ids) :] if final else []
        total = sum(pos[tok].logprob for pos, tok in zip(positions, answer_ids, strict=True))
        return total, len(answer_ids)

    def _split_answer(
        self, messages: Sequence[dict[str, str]], answer: str
    ) -> tuple[list[int], list[int]]:
        """Prompt ids and answer ids, the answer as the chat template renders it (as TRL does)."""
        prompt = self.encode_chat(messages)
        full = list(
            self._tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": answer}],
                add_generation_prompt=False,
                tokenize=True,
                return_dict=False,
            )
        )
        cut = 0
        while cut < min(len(prompt), len(full)) and prompt[cut] == full[cut]:
            cut += 1
        return full[:cut], full[cut:]

    async def _generate(self, request_id, prompt_ids, params, adapter, exclusive=False):
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        if len(prompt_ids) >= self.max_model_len:
            raise ContextLengthExceeded(
                f"The prompt has {len(prompt_ids)} tokens; this model's context is "
                f"{self.max_model_len} tokens.",
                param="messages",
            )
        lora = LoRARequest(adapter.name, adapter.int_id, str(adapter.path)) if adapter else None
        outputs = self._llm.generate(
            TokensPrompt(prompt_token_ids=prompt_ids), params, request_id, lora_request=lora
        )
        gate = self._gate.exclusive() if exclusive else self._gate.shared()
        try:
            async with gate, aclosing(outputs):
                async for out in outputs:
                    yield out
        except (EngineDeadError, EngineGenerateError) as exc:
            raise EngineUnavailable(f"The inference engine failed: {exc!r}") from exc

    async def load_adapter(self, adapter: Adapter) -> None:
        from vllm.lora.request import LoRARequest

        await self._llm.add_lora(LoRARequest(adapter.name, adapter.int_id, str(adapter.path)))

    async def unload_adapter(self, adapter: Adapter) -> None:
        await self._llm.remove_lora(adapter.int_id)

    async def check_health(self) -> None:
        try:
            await self._llm.check_health()
        except Exception as exc:
            raise EngineUnavailable(f"The inference engine is not healthy: {exc!r}") from exc
