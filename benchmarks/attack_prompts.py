"""Dev prompt rows that a small model often complies with: dev goals behind attack styles.

    .venv/bin/python benchmarks/attack_prompts.py --out var/eval/dev-attack-prompts.jsonl \
        [--wrapped 60] [--plain 20] [--benign 30] [--seed 0] [--data-dir ../shared/data]

The rewrite can only be measured on drafts the judge flags, and the default model refuses
most plain harmful requests. This writes *prompt rows* (no answer: the server drafts) from dev
files only: AdvBench goals wrapped in this project's attack styles (``jailbreak_styles.py``,
harmful), plain JailbreakBench harmful behaviors (harmful) and XSTest ``safe`` prompts (benign),
for ``conscience eval run --mode rewrite``.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from benchmarks.jailbreak_styles import STYLES, style_of, wrap
from conscience.eval.dataset import EvalItem, write_jsonl

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def attack_prompt_rows(
    data_dir: Path, wrapped: int, plain: int, benign: int, seed: int
) -> list[EvalItem]:
    """The rows, drawn with ``seed``."""
    rng = random.Random(seed)
    advbench = rng.sample(_rows(data_dir / "advbench" / "harmful_behaviors.csv"), wrapped)
    jbb = _rows(data_dir / "jailbreakbench" / "behaviors" / "harmful-behaviors.csv")
    safe = [r for r in _rows(data_dir / "xstest" / "xstest_prompts.csv") if r["label"] == "safe"]
    rows: list[EvalItem] = []
    for i, r in enumerate(advbench):
        prompt = wrap(r["goal"], STYLES[i % len(STYLES)], rng)
        rows.append(_row(f"attack-{i}", prompt, "harmful", style_of(prompt), "advbench-wrapped"))
    for i, r in enumerate(rng.sample(jbb, plain)):
        rows.append(_row(f"plain-{i}", r["goal"], "harmful", r["category"], "jbb-behaviors"))
    for i, r in enumerate(rng.sample(safe, benign)):
        rows.append(_row(f"safe-{i}", r["prompt"], "benign", r["type"], "xstest-prompts"))
    return rows


def _row(id_: str, prompt: str, label: str, category: str, source: str) -> EvalItem:
    return EvalItem(
        id=id_, prompt=prompt, label=label, category=category, source=source, split="dev"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--wrapped", type=int, default=60)
    parser.add_argument("--plain", type=int, default=20)
    parser.add_argument("--benign", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    rows = attack_prompt_rows(args.data_dir, args.wrapped, args.plain, args.benign, args.seed)
    print(write_jsonl(rows, args.out), "rows ->", args.out)


if __name__ == "__main__":
    main()
