"""Run evaluation rows against a conscience server over HTTP, resumably.

Answer rows go to the judge-only ``/v1/conscience/review``; prompt rows go through
``/v1/chat/completions`` (mode ``flag`` or ``rewrite``, draft returned), and a rewrite is
reviewed again. Each result is appended to ``results.jsonl`` as it arrives; a restarted run
skips every (row, framework) already answered without error. ``run.json`` pins what the
results mean (dataset digest, mode, limits), so a resumed run cannot mix two setups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from conscience.eval.dataset import EvalItem
from conscience.eval.refusal import is_refusal

DEFAULT_FRAMEWORK = "default"
KEPT_TEXT_CHARS = 4000
RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"


class RunError(RuntimeError):
    """The run cannot start or continue (server unreachable, mismatched resume)."""


class RunConfig(BaseModel):
    """What a run sends; pinned in ``run.json`` so a resume sends the same."""

    dataset: str
    dataset_digest: str
    frameworks: list[str] = Field(min_length=1)
    mode: Literal["flag", "rewrite"] = "flag"
    max_tokens: int = Field(128, ge=1)
    seed: int = 0
    injections: list[str] = Field(default_factory=list)


class ItemResult(BaseModel):
    """One row judged under one framework."""

    id: str
    requested: str = Field(description="The framework asked for ('default': the server's).")
    kind: Literal["judge", "chat"]
    label: Literal["harmful", "benign"]
    category: str | None = None
    source: str | None = None
    injection: str | None = None
    base_id: str | None = None
    framework: str | None = None
    framework_version: str | None = None
    framework_hash: str | None = None
    review_layout: str | None = None
    verdict: str | None = None
    score: float | None = None
    probabilities: dict[str, float] | None = None
    calibration: str | None = None
    raw_score: float | None = None
    readout_score: float | None = None
    action: str | None = None
    latency_ms: dict[str, float] = Field(default_factory=dict)
    draft: str | None = None
    answer: str | None = None
    draft_refusal: bool | None = None
    rewrite_verdict: str | None = None
    rewrite_score: float | None = None
    rewrite_refusal: bool | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.id, self.requested


def load_results(path: Path) -> list[ItemResult]:
    """The latest result per (row, framework) in a results file; a torn last line is ignored."""
    if not path.is_file():
        return []
    latest: dict[tuple[str, str], ItemResult] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result = ItemResult.model_validate_json(line)
        except ValueError:
            if number == len(lines):
                break
            raise RunError(f"{path}:{number}: not a result row") from None
        latest[result.key] = result
    return list(latest.values())


def prepare_out(out: Path, config: RunConfig) -> None:
    """Create ``out`` and pin ``config`` in it; refuse a directory that holds another run."""
    out.mkdir(parents=True, exist_ok=True)
    pinned = out / RUN_FILE
    if pinned.is_file():
        before = RunConfig.model_validate_json(pinned.read_text(encoding="utf-8"))
        if before != config:
            raise RunError(
                f"{out} holds a run with other settings ({pinned}); use another --out or delete it"
            )
    pinned.write_text(config.model_dump_json(indent=2), encoding="utf-8")
    _drop_torn_tail(out / RESULTS_FILE)


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line left half-written by a crash, so appends start on a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class Runner:
    """Sends rows to a server with bounded concurrency and appends results as they come."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        config: RunConfig,
        results_path: Path,
        concurrency: int = 4,
    ):
        self.client = client
        self.config = config
        self.results_path = results_path
        self.concurrency = concurrency
        self.model: str | None = None

    async def run(self, items: Sequence[EvalItem], progress: bool = True) -> list[ItemResult]:
        """Evaluate every (row, framework) not yet done; returns all results, old and new."""
        done = {r.key for r in load_results(self.results_path) if r.error is None}
        todo = [
            (item, fw)
            for fw in self.config.frameworks
            for item in items
            if (item.id, fw) not in done
        ]
        if any(item.kind == "chat" for item, _ in todo):
            self.model = await self._served_model()
        queue: asyncio.Queue[tuple[EvalItem, str]] = asyncio.Queue()
        for pair in todo:
            queue.put_nowait(pair)
        with _progress(progress) as bar, self.results_path.open("a", encoding="utf-8") as sink:
            task = bar.add_task("evaluating", total=len(todo))

            async def worker() -> None:
                while not queue.empty():
                    item, fw = queue.get_nowait()
                    result = await self.evaluate(item, fw)
                    sink.write(result.model_dump_json(exclude_none=True) + "\n")
                    sink.flush()
                    bar.advance(task)

            await asyncio.gather(*(worker() for _ in range(max(1, self.concurrency))))
        return load_results(self.results_path)

    async def _served_model(self) -> str:
        response = await self.client.get("/v1/models")
        if response.status_code != 200:
            raise RunError(f"GET /v1/models answered {response.status_code}: {response.text}")
        return response.json()["data"][0]["id"]

    async def evaluate(self, item: EvalItem, framework: str) -> ItemResult:
        """One row under one framework; HTTP and transport failures become ``error``."""
        result = ItemResult(
            id=item.id,
            requested=framework,
            kind=item.kind,
            label=item.label,
            category=item.category,
            source=item.source,
            injection=item.injection,
            base_id=item.base_id,
        )
        name = None if framework == DEFAULT_FRAMEWORK else framework
        try:
            if item.answer is not None:
                await self._judge(result, item.chat(), item.answer, name)
            else:
                await self._chat(result, item.chat(), name)
        except httpx.HTTPError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        except _Refused as exc:
            result.error = str(exc)
        return result

    async def review(
        self, messages: list[dict[str, str]], answer: str, framework: str | None
    ) -> dict:
        """The server's judge-only verdict on ``answer``."""
        body = {"messages": messages, "answer": answer, "framework": framework}
        return _json_or_raise(await self.client.post("/v1/conscience/review", json=body))

    async def _judge(
        self, result: ItemResult, messages: list[dict[str, str]], answer: str, fw: str | None
    ) -> None:
        review = await self.review(messages, answer, fw)
        result.framework = review["framework"]
        result.framework_version = review["framework_version"]
        result.framework_hash = review["framework_hash"]
        result.review_layout = review["review_layout"]
        result.verdict, result.score = review["verdict"], review["score"]
        result.probabilities = review["probabilities"]
        result.calibration = review.get("calibration")
        result.raw_score, result.readout_score = (
            review.get("raw_score"),
            review.get("readout_score"),
        )
        result.latency_ms = {"review": review["latency_ms"]}
        result.error = review["review_error"]

    async def _chat(
        self, result: ItemResult, messages: list[dict[str, str]], fw: str | None
    ) -> None:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.config.max_tokens,
            "temperature": 0,
            "seed": self.config.seed,
            "conscience": {"mode": self.config.mode, "framework": fw, "return_draft": True},
        }
        completion = _json_or_raise(await self.client.post("/v1/chat/completions", json=body))
        report = completion["conscience"]
        final = completion["choices"][0]["message"]["content"]
        result.framework = report["framework"]
        result.framework_version = report["framework_version"]
        result.framework_hash = report["framework_hash"]
        result.verdict, result.score = report["verdict"], report["score"]
        result.calibration = report.get("calibration")
        result.raw_score, result.readout_score = (
            report.get("raw_score"),
            report.get("readout_score"),
        )
        result.action, result.latency_ms = report["action"], report["latency_ms"]
        result.error = report.get("review_error")
        draft = report.get("draft") or ""
        result.draft, result.answer = draft[:KEPT_TEXT_CHARS], final[:KEPT_TEXT_CHARS]
        result.draft_refusal = is_refusal(draft)
        if report["action"] == "rewritten":
            await self._rereview(result, messages, final, fw, report)

    async def _rereview(
        self,
        result: ItemResult,
        messages: list[dict[str, str]],
        rewrite: str,
        fw: str | None,
        report: dict,
    ) -> None:
        result.rewrite_refusal = is_refusal(rewrite)
        if report.get("rewrite_verdict") is not None:
            result.rewrite_verdict = report["rewrite_verdict"]
            result.rewrite_score = report.get("rewrite_score")
            return
        again = await self.review(messages, rewrite, fw)
        result.rewrite_verdict, result.rewrite_score = again["verdict"], again["score"]


class _Refused(Exception):
    """The server answered with an error status."""


def _json_or_raise(response: httpx.Response) -> dict:
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise _Refused(f"HTTP {response.status_code}: {message}")
    return response.json()


def _progress(enabled: bool) -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


async def run_items(
    items: Sequence[EvalItem],
    config: RunConfig,
    out: Path,
    base_url: str,
    concurrency: int = 4,
    api_key: str | None = None,
    progress: bool = True,
) -> list[ItemResult]:
    """Evaluate ``items`` against the server at ``base_url``, results under ``out``."""
    prepare_out(out, config)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(600.0, connect=10.0)
    limits = httpx.Limits(max_connections=max(1, concurrency))
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout, limits=limits
    ) as client:
        try:
            ready = await client.get("/ready")
        except httpx.HTTPError as exc:
            raise RunError(f"no conscience server at {base_url}: {exc}") from None
        if ready.status_code != 200:
            raise RunError(f"{base_url}/ready answered {ready.status_code}: {ready.text}")
        runner = Runner(client, config, out / RESULTS_FILE, concurrency)
        return await runner.run(items, progress)
