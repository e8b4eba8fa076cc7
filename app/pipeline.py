"""The conscience pipeline: draft (policy) → review (frozen base) → [rewrite (frozen base)].

No FastAPI here: the router hands in a validated request and gets back text deltas (only in
mode ``off``, where nothing is reviewed) followed by one ``Outcome``. In every other mode no
token leaves before the review has decided, so streamed and non-streamed answers are equal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from app import metrics
from app.conscience.calibration import ProfileBook
from app.conscience.frameworks import Framework, FrameworkCatalog
from app.conscience.prompts import (
    DraftTokens,
    review_prompt_hash,
    review_prompt_ids,
    rewrite_messages,
)
from app.conscience.verdict import Judge, JudgeBook, Judgement
from app.engine import Adapter, Engine, Generation, SamplingConfig, TextDelta
from app.errors import (
    ContextLengthExceeded,
    EngineUnavailable,
    PermissionDenied,
    ReviewFailed,
    ReviewOutputInvalid,
)
from app.generation_defaults import GenerationDefaults
from app.policy import CURRENT, AdapterChoice, PolicySlot
from app.protocol import (
    Action,
    ChatCompletionRequest,
    ConscienceReport,
    StageLatency,
    Verdict,
    as_chat,
)
from app.records import Message, PairRecord
from app.settings import FailurePolicy, Mode, ReviewLayout, Settings

PairSink = Callable[[PairRecord], bool]


@dataclass
class Plan:
    """A validated request, ready to run."""

    request_id: str
    messages: list[dict[str, str]]
    prompt_ids: list[int]
    sampling: SamplingConfig
    mode: Mode
    framework: Framework
    return_draft: bool
    adapter: AdapterChoice = CURRENT


@dataclass
class Outcome:
    """The final answer and what the conscience did."""

    answer: Generation
    prompt_tokens: int
    report: ConscienceReport


@dataclass
class Review:
    """The judge's decision on one answer, or why there is none."""

    verdict: Verdict
    score: float | None = None
    error: str | None = None
    judgement: Judgement | None = None
    layout: ReviewLayout | None = None


class ConsciencePipeline:
    """Runs one chat completion through the conscience."""

    def __init__(
        self,
        engine: Engine,
        catalog: FrameworkCatalog,
        settings: Settings,
        policy: PolicySlot,
        sink: PairSink | None = None,
        generation: GenerationDefaults | None = None,
        profiles: ProfileBook | None = None,
    ):
        self.engine = engine
        self.catalog = catalog
        self.settings = settings
        self.policy = policy
        self.sink = sink
        self.generation = generation or GenerationDefaults()
        self.profiles = profiles or ProfileBook([], fingerprint="none")
        self.judges = JudgeBook(
            [catalog.get(name) for name in catalog.names()],
            settings.review_layout,
            engine.encode_text,
            engine.decode_token,
            self.profiles,
        )

    def plan(self, request: ChatCompletionRequest, request_id: str) -> Plan:
        """Validate conscience options and lengths; raise typed errors for bad requests."""
        options = request.conscience
        mode = (options.mode if options and options.mode else None) or self.settings.mode
        if mode not in self.settings.allowed_modes:
            allowed = ", ".join(m.value for m in self.settings.allowed_modes)
            raise PermissionDenied(
                f"Mode {mode.value!r} is not allowed on this server (allowed: {allowed}).",
                param="conscience.mode",
                code="mode_not_allowed",
            )
        framework = self.catalog.get(
            (options.framework if options and options.framework else None)
            or self.settings.framework
        )
        return_draft = bool(options and options.return_draft)
        if return_draft and not self.settings.allow_return_draft:
            raise PermissionDenied(
                "This server does not return drafts.",
                param="conscience.return_draft",
                code="return_draft_not_allowed",
            )
        messages = as_chat(request.messages)
        prompt_ids = self.engine.encode_chat(messages)
        max_tokens = self._max_tokens(len(prompt_ids), request.completion_limit())
        model = self.generation  # the model's defaults fill what the request leaves out
        sampling = SamplingConfig(
            max_tokens=max_tokens,
            temperature=model.pick("temperature", request.temperature, 1.0),
            top_p=model.pick("top_p", request.top_p, 1.0),
            top_k=max(0, model.pick("top_k", request.top_k, 0)),
            repetition_penalty=model.pick("repetition_penalty", request.repetition_penalty, 1.0),
            stop=tuple(request.stop or ()),
            seed=request.seed,
            presence_penalty=request.presence_penalty or 0.0,
            frequency_penalty=request.frequency_penalty or 0.0,
            min_tokens=min(request.min_tokens or 0, max_tokens),
            ignore_eos=request.ignore_eos,
        )
        return Plan(request_id, messages, prompt_ids, sampling, mode, framework, return_draft)

    def _max_tokens(self, prompt_tokens: int, requested: int | None) -> int:
        room = self.engine.max_model_len - prompt_tokens
        if requested is not None and requested > room:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.engine.max_model_len} tokens. "
                f"The messages take {prompt_tokens} tokens and {requested} were requested "
                "for the completion.",
                param="max_tokens",
            )
        if room <= 0:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.engine.max_model_len} tokens; "
                f"the messages take {prompt_tokens} tokens.",
                param="messages",
            )
        return requested or min(self.generation.max_tokens(self.settings.default_max_tokens), room)

    async def execute(self, plan: Plan) -> AsyncIterator[TextDelta | Outcome]:
        """Yield live deltas (mode ``off`` only), then exactly one ``Outcome``."""
        start = time.perf_counter()
        latency = StageLatency()
        async with self.policy.use(plan.adapter) as adapter:
            draft = Generation()
            drafting = self._generate("draft", plan, plan.prompt_ids, adapter, draft)
            async with aclosing(drafting):
                async for delta in drafting:
                    if plan.mode is Mode.off:
                        yield delta
        latency.draft = _ms_since(start)
        adapter_version = adapter.version if adapter else None
        if plan.mode is Mode.off:
            report = self._report(plan, Review(Verdict.unknown), Action.passed, latency, start)
            report.adapter = adapter_version
            yield Outcome(draft, len(plan.prompt_ids), report)
            return
        outcome = await self._conscience(plan, draft, adapter_version, latency, start)
        outcome.report.adapter = adapter_version
        if plan.return_draft:
            outcome.report.draft = draft.text
        yield outcome

    async def judge(
        self,
        request_id: str,
        conversation: list[dict[str, str]],
        answer: str,
        framework: str | None,
    ) -> tuple[Framework, Review, float]:
        """Review a given answer only (no draft, no rewrite): framework, review, milliseconds."""
        chosen = self.catalog.get(framework or self.settings.framework)
        plan = Plan(request_id, conversation, [], SamplingConfig(1), Mode.flag, chosen, False)
        latency = StageLatency()
        judge = self.judges.pick(chosen, adapter_drafted=False)
        review = await self._review(plan, conversation, answer, latency, judge)
        return chosen, review, latency.review

    async def _conscience(
        self,
        plan: Plan,
        draft: Generation,
        adapter_version: str | None,
        latency: StageLatency,
        start: float,
    ) -> Outcome:
        judge = self.judges.pick(plan.framework, adapter_drafted=adapter_version is not None)
        # The draft's own tokens, when its KV cache is the frozen base's to reuse (stop strings
        # cut the text short of the generated tokens).
        drafted = None
        if adapter_version is None and not plan.sampling.stop:
            drafted = DraftTokens(plan.prompt_ids, draft.token_ids)
        review = await self._review(plan, plan.messages, draft.text, latency, judge, drafted)
        if review.error is not None:
            return self._on_review_failure(plan, draft, review, latency, start)
        if review.verdict is not Verdict.unethical:
            report = self._report(plan, review, Action.passed, latency, start)
            return Outcome(draft, len(plan.prompt_ids), report)
        if plan.mode is Mode.flag:
            report = self._report(plan, review, Action.flagged, latency, start)
            return Outcome(draft, len(plan.prompt_ids), report)
        rewrite = await self._rewrite(plan, latency)
        report = self._report(plan, review, Action.rewritten, latency, start)
        if self.settings.rereview_rewrite:
            again = await self._review(plan, plan.messages, rewrite.text, latency, judge)
            report.rewrite_verdict, report.rewrite_score = again.verdict, again.score
        if rewrite.text.strip() == draft.text.strip():
            metrics.PAIRS_SKIPPED.labels("rewrite_unchanged").inc()  # no preference to learn
        else:
            self._record_pair(plan, draft, rewrite, review, adapter_version)
        return Outcome(rewrite, len(plan.prompt_ids), report)

    async def _generate(
        self,
        stage: str,
        plan: Plan,
        prompt_ids: list[int],
        adapter: Adapter | None,
        into: Generation,
        max_tokens: int | None = None,
    ) -> AsyncIterator[TextDelta]:
        sampling = plan.sampling
        if max_tokens is not None:
            sampling = SamplingConfig(**{**sampling.__dict__, "max_tokens": max_tokens})
        started = time.perf_counter()
        deltas = self.engine.stream(f"{plan.request_id}-{stage}", prompt_ids, sampling, adapter)
        async with aclosing(deltas):
            async for delta in deltas:
                into.pieces.append(delta.text)
                into.token_ids.extend(delta.token_ids)
                into.cached_tokens = delta.cached_tokens
                into.completion_tokens = delta.completion_tokens
                if delta.finish_reason is not None:
                    into.finish_reason = delta.finish_reason
                yield delta
        metrics.STAGE_LATENCY.labels(stage).observe(time.perf_counter() - started)
        metrics.TOKENS.labels(stage, "prompt").inc(len(prompt_ids))
        metrics.TOKENS.labels(stage, "completion").inc(into.completion_tokens)
        metrics.CACHED_TOKENS.labels(stage).inc(into.cached_tokens)

    async def _review(
        self,
        plan: Plan,
        conversation: list[dict[str, str]],
        answer: str,
        latency: StageLatency,
        judge: Judge,
        drafted: DraftTokens | None = None,
    ) -> Review:
        started = time.perf_counter()
        layout = judge.layout
        try:
            ids = review_prompt_ids(
                self.engine,
                plan.framework,
                layout,
                conversation,
                answer,
                self.settings.review_max_input_tokens,
                drafted,
            )
            async with asyncio.timeout(self.settings.review_timeout_s):
                first = await self.engine.first_token_logprobs(
                    f"{plan.request_id}-review", ids, judge.token_ids
                )
            try:
                judgement = judge.judge(first.logprobs, self.settings.flag_threshold)
            except ValueError as exc:
                raise ReviewOutputInvalid(str(exc)) from exc
            result = Review(judgement.verdict, judgement.score, judgement=judgement)
            metrics.VERDICTS.labels(plan.framework.name, judgement.verdict.value).inc()
            metrics.TOKENS.labels("review", "prompt").inc(len(ids))
            metrics.CACHED_TOKENS.labels("review").inc(first.cached_tokens)
        except TimeoutError:
            limit = self.settings.review_timeout_s
            result = _failed(plan, "timeout", f"the review took longer than {limit}s")
        except ContextLengthExceeded as exc:
            result = _failed(plan, "context_length", exc.message)
        except ReviewOutputInvalid as exc:
            result = _failed(plan, "bad_output", exc.message)
        except EngineUnavailable as exc:
            result = _failed(plan, "engine_error", exc.message)
        result.layout = layout
        elapsed = time.perf_counter() - started
        latency.review += elapsed * 1000
        metrics.STAGE_LATENCY.labels("review").observe(elapsed)
        return result

    def _on_review_failure(
        self, plan: Plan, draft: Generation, review: Review, latency: StageLatency, start: float
    ) -> Outcome:
        policy = self.settings.failure_policy
        metrics.FAIL_DECISIONS.labels(policy.value).inc()
        if policy is FailurePolicy.fail_open:
            report = self._report(plan, review, Action.passed, latency, start)
            return Outcome(draft, len(plan.prompt_ids), report)
        if self.settings.fail_closed_answer is None:
            raise ReviewFailed(f"The conscience review failed ({review.error}); not answering.")
        safe = Generation([self.settings.fail_closed_answer], 0, "stop")
        safe.completion_tokens = self.engine.token_count(self.settings.fail_closed_answer)
        report = self._report(plan, review, Action.rewritten, latency, start)
        return Outcome(safe, len(plan.prompt_ids), report)

    async def _rewrite(self, plan: Plan, latency: StageLatency) -> Generation:
        started = time.perf_counter()
        ids = self.engine.encode_chat(rewrite_messages(plan.framework, plan.messages))
        room = self.engine.max_model_len - len(ids)
        if room <= 0:
            raise ContextLengthExceeded(
                "The rewrite prompt does not fit the context.", param="messages"
            )
        rewrite = Generation()
        limit = min(plan.sampling.max_tokens, room)
        rewriting = self._generate("rewrite", plan, ids, None, rewrite, max_tokens=limit)
        async with aclosing(rewriting):
            async for _ in rewriting:
                pass
        latency.rewrite = _ms_since(started)
        return rewrite

    def _report(
        self, plan: Plan, review: Review, action: Action, latency: StageLatency, start: float
    ) -> ConscienceReport:
        latency.total = _ms_since(start)
        metrics.ACTIONS.labels(plan.mode.value, action.value).inc()
        judged = review.judgement
        return ConscienceReport(
            mode=plan.mode,
            verdict=review.verdict,
            score=review.score,
            calibration=judged.profile if judged else None,
            raw_score=judged.raw_score if judged else None,
            readout_score=judged.readout_score if judged else None,
            labels=judged.probabilities if judged else None,
            framework=plan.framework.name,
            framework_version=plan.framework.version,
            framework_hash=plan.framework.prompt_hash,
            review_layout=review.layout.value if review.layout else None,
            action=action,
            latency_ms=latency,
            review_error=review.error,
        )

    def _record_pair(
        self,
        plan: Plan,
        draft: Generation,
        rewrite: Generation,
        review: Review,
        adapter_version: str | None,
    ) -> None:
        if self.sink is None:
            return
        record = PairRecord(
            prompt=[Message(**m) for m in plan.messages],
            chosen=[Message(role="assistant", content=rewrite.text)],
            rejected=[Message(role="assistant", content=draft.text)],
            framework=plan.framework.name,
            framework_version=plan.framework.version,
            review_prompt_hash=review_prompt_hash(plan.framework, review.layout),
            verdict=review.verdict.value,
            score=review.score,
            adapter_version=adapter_version,
            model=self.engine.model_name,
        )
        self.sink(record)


def _failed(plan: Plan, kind: str, message: str) -> Review:
    metrics.REVIEW_FAILURES.labels(kind).inc()
    metrics.VERDICTS.labels(plan.framework.name, Verdict.unknown.value).inc()
    return Review(Verdict.unknown, None, f"{kind}: {message}")


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
