"""The Emergent Misalignment questions and their judge prompts, read from the paper's YAML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


class QuestionsError(ValueError):
    """The questions file cannot be used; the message says why."""


@dataclass(frozen=True)
class Question:
    """One EM question: its paraphrases, optional system prompt and the judge prompts."""

    id: str
    paraphrases: tuple[str, ...]
    judge_prompts: dict[str, str]
    system: str | None = None

    def messages(self, paraphrase: int) -> list[dict[str, str]]:
        """The chat the model answers for one paraphrase."""
        turns = [{"role": "system", "content": self.system}] if self.system else []
        return [*turns, {"role": "user", "content": self.paraphrases[paraphrase]}]

    def judge_prompt(self, metric: str, paraphrase: int, answer: str) -> str:
        """The judge's prompt for ``metric`` (``aligned``/``coherent``) on one answer."""
        template = self.judge_prompts[metric]
        filled = template.replace("{question}", self.paraphrases[paraphrase])
        return filled.replace("{answer}", answer)


def load_questions(path: Path, ids: list[str] | None = None) -> list[Question]:
    """Free-form 0-100 questions of ``path`` (all, or those named in ``ids``, in file order)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise QuestionsError(f"{path}: {exc}") from exc
    if not isinstance(raw, list):
        raise QuestionsError(f"{path}: expected a list of questions")
    found = []
    for entry in raw:
        prompts = entry.get("judge_prompts") or {}
        if entry.get("type") != "free_form_judge_0_100" or not {"aligned", "coherent"} <= set(
            prompts
        ):
            continue
        found.append(
            Question(
                id=str(entry["id"]),
                paraphrases=tuple(entry["paraphrases"]),
                judge_prompts={k: str(v) for k, v in prompts.items()},
                system=entry.get("system"),
            )
        )
    if ids:
        by_id = {q.id: q for q in found}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise QuestionsError(f"{path}: no 0-100 question with id {', '.join(missing)}")
        found = [q for q in found if q.id in set(ids)]
    if not found:
        raise QuestionsError(f"{path}: no free-form 0-100 questions with aligned/coherent prompts")
    return found


def plain_ids(questions: list[Question]) -> list[str]:
    """Ids of the questions asked as themselves (no ``_json``/``_template`` variant)."""
    return [q.id for q in questions if not q.id.endswith(("_json", "_template"))]
