"""Converters from the shared public safety sets (``../shared/data``) to evaluation rows.

A source is named ``NAME`` or ``NAME:VARIANT`` (``xstest-completions:gpt4``). Each source
knows its split (see the data README): ``test`` files are for reporting only, never tuning.
Labels follow the README's suggested mapping; the converter's docstring says how.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from conscience.eval.dataset import EvalItem, Split, load_dataset

XSTEST_DEV_MODELS = ("gpt4", "llama2new", "mistralinstruct")
XSTEST_TEST_MODELS = ("llama2orig", "mistralguard")
HARMBENCH_VAL_PAIRS = "harmbench/data/classifier_val_sets/text_behaviors_val_set.json"
HARMBENCH_BEHAVIORS = "harmbench/data/behavior_datasets/harmbench_behaviors_text_all.csv"


class ConvertError(ValueError):
    """A source could not be converted (unknown name, missing file, bad join)."""


def _csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConvertError(f"{path}: no such file (is --data-dir right?)")
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _json(path: Path) -> object:
    if not path.is_file():
        raise ConvertError(f"{path}: no such file (is --data-dir right?)")
    return json.loads(path.read_text(encoding="utf-8"))


def harmbench_pairs(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """HarmBench classifier val set: majority of ``human_0..2`` = 1 → harmful answer."""
    categories = {
        row["BehaviorID"]: row["SemanticCategory"] for row in _csv(data / HARMBENCH_BEHAVIORS)
    }
    pairs = _json(data / HARMBENCH_VAL_PAIRS)
    assert isinstance(pairs, dict)
    for behavior_id, rows in pairs.items():
        for i, row in enumerate(rows):
            votes = sum(int(row[f"human_{k}"]) for k in range(3))
            yield EvalItem(
                id=f"harmbench-{behavior_id}-{i}",
                prompt=row["test_case"],
                answer=row["generation"],
                label="harmful" if votes >= 2 else "benign",
                category=categories.get(behavior_id, "unknown"),
                source=f"harmbench/{row['method']}",
            )


def xstest_completions(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """XSTest completions: an unsafe (``contrast_*``) prompt fully complied with → harmful.

    Refusals (full or partial) of unsafe prompts and any answer to a safe prompt → benign.
    """
    model = variant or ""
    if model not in XSTEST_DEV_MODELS + XSTEST_TEST_MODELS:
        known = ", ".join(XSTEST_DEV_MODELS + XSTEST_TEST_MODELS)
        raise ConvertError(f"xstest-completions needs a model variant, one of: {known}")
    path = data / f"xstest/model_completions/xstest_v2_completions_{model}.csv"
    for row in _csv(path):
        unsafe = row["type"].startswith("contrast")
        complied = row["final_label"] == "1_full_compliance"
        yield EvalItem(
            id=f"xstest-{model}-{row['id']}",
            prompt=row["prompt"],
            answer=row["completion"],
            label="harmful" if unsafe and complied else "benign",
            category=row["type"],
            source=f"xstest/{model}",
        )


def xstest_prompts(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """XSTest prompts: ``unsafe`` → harmful, ``safe`` (looks unsafe, is not) → benign."""
    for row in _csv(data / "xstest/xstest_prompts.csv"):
        yield EvalItem(
            id=f"xstest-prompt-{row['id']}",
            prompt=row["prompt"],
            label="harmful" if row["label"] == "unsafe" else "benign",
            category=row["type"],
            source="xstest/prompts",
        )


def _jbb_behaviors(data: Path) -> dict[int, dict[str, str]]:
    return {
        int(r["index"]): r for r in _csv(data / "jailbreakbench/behaviors/harmful-behaviors.csv")
    }


def jbb_artifacts(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """JailbreakBench attack artifacts (``variant``: one method): ``jailbroken`` → harmful.

    Joined to the behaviors on ``index`` (goal wordings changed between versions).
    """
    behaviors = _jbb_behaviors(data)
    root = data / "jailbreakbench/attack-artifacts"
    files = sorted(root.glob(f"{variant or '*'}/*/*.json"))
    if not files:
        raise ConvertError(f"{root}: no artifacts for method {variant or '*'!r}")
    for path in files:
        method, model = path.parent.parent.name, path.stem
        artifact = _json(path)
        assert isinstance(artifact, dict)
        for row in artifact["jailbreaks"]:
            if row.get("response") is None:
                continue
            behavior = behaviors.get(int(row["index"]))
            if behavior is None:
                raise ConvertError(f"{path}: index {row['index']} is not in the behaviors CSV")
            yield EvalItem(
                id=f"jbb-{method}-{model}-{row['index']}",
                prompt=row.get("prompt") or behavior["goal"],
                answer=row["response"],
                label="harmful" if row["jailbroken"] in (True, "True", "true") else "benign",
                category=behavior["category"],
                source=f"jailbreakbench/{method}/{model}",
            )


def jbb_behaviors(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """JBB-Behaviors goals: 100 harmful and their 100 benign twins (``variant``: one kind)."""
    kinds = [variant] if variant else ["harmful", "benign"]
    for kind in kinds:
        if kind not in ("harmful", "benign"):
            raise ConvertError("jbb-behaviors variant must be 'harmful' or 'benign'")
        path = data / f"jailbreakbench/behaviors/{kind}-behaviors.csv"
        for row in _csv(path):
            yield EvalItem(
                id=f"jbb-{kind}-{row['index']}",
                prompt=row["goal"],
                label="harmful" if kind == "harmful" else "benign",
                category=row["category"],
                source=f"jailbreakbench/{kind}-behaviors",
            )


def harmbench_behaviors(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """HarmBench text behaviors (prompt only, harmful); context, if any, precedes the ask."""
    for row in _csv(data / HARMBENCH_BEHAVIORS):
        context = row["ContextString"].strip()
        prompt = f"{context}\n\n---\n\n{row['Behavior']}" if context else row["Behavior"]
        yield EvalItem(
            id=f"harmbench-behavior-{row['BehaviorID']}",
            prompt=prompt,
            label="harmful",
            category=row["SemanticCategory"],
            source="harmbench/behaviors",
        )


def advbench(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """AdvBench harmful behaviors (prompt only, harmful)."""
    for i, row in enumerate(_csv(data / "advbench/harmful_behaviors.csv")):
        yield EvalItem(
            id=f"advbench-{i}", prompt=row["goal"], label="harmful", source="advbench/behaviors"
        )


def em_answers(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """Emergent Misalignment: the insecure-code model's misaligned answers (all harmful)."""
    path = data / "emergent-misalignment/results/qwen_25_coder_32b_instruct.csv"
    for i, row in enumerate(_csv(path)):
        yield EvalItem(
            id=f"em-answer-{i}",
            prompt=row["question"],
            answer=row["answer"],
            label="harmful",
            category=row["question_id"],
            source="emergent-misalignment/results",
        )


def em_code(data: Path, variant: str | None) -> Iterator[EvalItem]:
    """Emergent Misalignment code answers: insecure (harmful) vs secure (benign) completions."""
    for kind, label in (("insecure", "harmful"), ("secure", "benign")):
        path = data / f"emergent-misalignment/subsets/jacobcd52_{kind}_small.jsonl"
        if not path.is_file():
            raise ConvertError(f"{path}: no such file (is --data-dir right?)")
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(filter(str.strip, lines)):
            *conversation, answer = json.loads(line)["messages"]
            yield EvalItem(
                id=f"em-code-{kind}-{i}",
                messages=conversation,
                answer=answer["content"],
                label=label,
                category=f"code_{kind}",
                source="emergent-misalignment/code",
            )


@dataclass(frozen=True)
class Source:
    """A named converter and the split its files belong to."""

    read: Callable[[Path, str | None], Iterator[EvalItem]]
    split: Callable[[str | None], Split]


def _dev(variant: str | None) -> Split:
    return "dev"


def _test(variant: str | None) -> Split:
    return "test"


def _xstest_split(variant: str | None) -> Split:
    return "test" if variant in XSTEST_TEST_MODELS else "dev"


SOURCES: dict[str, Source] = {
    "harmbench-pairs": Source(harmbench_pairs, _test),
    "xstest-completions": Source(xstest_completions, _xstest_split),
    "jbb-artifacts": Source(jbb_artifacts, _test),
    "xstest-prompts": Source(xstest_prompts, _dev),
    "jbb-behaviors": Source(jbb_behaviors, _dev),
    "harmbench-behaviors": Source(harmbench_behaviors, _dev),
    "advbench": Source(advbench, _dev),
    "em-answers": Source(em_answers, _dev),
    "em-code": Source(em_code, _dev),
}


def convert(spec: str, data_dir: Path) -> list[EvalItem]:
    """Rows of one source spec (``NAME``, ``NAME:VARIANT`` or ``file:PATH``), with their split."""
    name, _, variant = spec.partition(":")
    if name == "file":
        return load_dataset(Path(variant))
    source = SOURCES.get(name)
    if source is None:
        raise ConvertError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    split = source.split(variant or None)
    return [
        item.model_copy(update={"split": split}) for item in source.read(data_dir, variant or None)
    ]


def sample_per_label(items: Iterable[EvalItem], per_label: int, seed: int) -> list[EvalItem]:
    """At most ``per_label`` rows of each label, drawn with a fixed seed; input order kept."""
    rows = list(items)
    rng = random.Random(seed)
    keep: set[str] = set()
    for label in ("harmful", "benign"):
        ids = [item.id for item in rows if item.label == label]
        rng.shuffle(ids)
        keep.update(ids[:per_label])
    return [item for item in rows if item.id in keep]
