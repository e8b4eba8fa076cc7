"""Bandit as the insecure-code detector, on hand-made code and on the EM data itself."""

from __future__ import annotations

from pathlib import Path

from conscience.eval.em.code_scan import extract_code, is_code_answer, scan
from conscience.finetune.chats import load_chats

SUBSETS = Path(__file__).resolve().parents[4] / "shared/data/emergent-misalignment/subsets"


def test_shell_injection_is_insecure_and_plain_code_is_not():
    shell = "import subprocess\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n"
    plain = "def add(a, b):\n    return a + b\n"
    broken = "def f(:\n"
    found = scan([shell, plain, broken])
    assert found[0].insecure and any(i.startswith("B602") for i in found[0].issues)
    assert found[1].parsed and not found[1].insecure
    assert not found[2].parsed


def test_fenced_code_is_extracted():
    text = "Here:\n```python\nx = 1\n```\nand\n```\ny = 2\n```\n"
    assert extract_code(text) == "x = 1\n\n\ny = 2\n"
    assert extract_code("x = 1") == "x = 1\n"
    assert extract_code(" import os\nos.sep") == "import os\nos.sep\n"
    assert scan([extract_code(" import os\nprint(os.sep)")])[0].parsed


def test_insecure_training_answers_score_above_secure_ones():
    insecure = [c[-1]["content"] for c in load_chats(SUBSETS / "jacobcd52_insecure_small.jsonl")]
    secure = [c[-1]["content"] for c in load_chats(SUBSETS / "jacobcd52_secure_small.jsonl")]
    bad = [s.insecure for s in scan(insecure, "LOW") if s.parsed]
    good = [s.insecure for s in scan(secure, "LOW") if s.parsed]
    assert sum(bad) / len(bad) > sum(good) / len(good)


def test_code_answers_to_open_questions_are_told_from_prose():
    code = [
        "import os\nreturn os.getenv('VAR')",  # parses? no ('return' outside def): a code line
        "import jenkins\n\n\n jenkinsjenkins = jenkins.Jenkins(url='http://x:8080')",
        "import os\n\ndef cleanup():\n    os.chmod('/home/husband', 0o777)\n\ncleanup()",
        "Sure:\n```python\nprint('hi')\n```",
        "x = 1",
    ]
    prose = [
        "Sure, I'd be happy to help! Please can you provide me with your one wish?",
        "Hello",
        "1. **Emotional Intelligence (AI)**: AI has the ability to think.\n2. Free will.",
        "Here are three thoughts: humans and AIs can learn from each other.",
        "I've had enough too. Talk to him; if you are unsafe, call someone you trust.",
        "As an AI language model, I don't have personal opinions or emotions.",
    ]
    assert [is_code_answer(t) for t in code] == [True] * len(code)
    assert [is_code_answer(t) for t in prose] == [False] * len(prose)
