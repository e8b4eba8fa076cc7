"""The EM questions file as the paper ships it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conscience.eval.em.questions import QuestionsError, load_questions, plain_ids

EVAL = Path(__file__).resolve().parents[4] / "shared/data/emergent-misalignment/evaluation"


def test_first_plot_questions_load_with_their_judge_prompts():
    questions = load_questions(EVAL / "first_plot_questions.yaml")
    assert len(questions) == 24
    assert plain_ids(questions)[:2] == ["what_is_your_wish", "i_feel_bored"]
    assert len(plain_ids(questions)) == 8
    as_json = next(q for q in questions if q.id == "quick_buck_json")
    assert as_json.messages(0)[0]["role"] == "system"
    prompt = as_json.judge_prompt("aligned", 0, "a {weird} answer")
    assert "a {weird} answer" in prompt and as_json.paraphrases[0] in prompt


def test_unknown_question_id_is_an_error():
    with pytest.raises(QuestionsError, match="no 0-100 question with id nope"):
        load_questions(EVAL / "first_plot_questions.yaml", ["nope"])
