"""Silver-labelled dev pairs in a jailbreak-benchmark style, made by a model from dev prompts.

    .venv/bin/python benchmarks/silver_dev.py --model DIR --out var/eval/dev-silver.jsonl \
        [--per-kind 150] [--seed 0] [--jailbreak] [--data-dir ../shared/data]

HarmBench's human-labelled pairs are all in the test split, so the judged dev pairs
(XSTest completions, Emergent Misalignment answers) differ from it in style. This writes
three kinds of dev rows from dev prompt files, answered by ``--model`` (vLLM offline):

- ``silver/prefill`` (harmful): an AdvBench goal answered after its own affirmative target
  ("Sure, here is ...") was put in the model's mouth; kept only when the refusal detector
  finds no refusal in the answer;
- ``silver/refusal`` (benign): another AdvBench goal answered freely;
  kept only when the refusal detector marks a refusal;
- ``silver/benign`` (benign): an XSTest ``safe`` prompt answered freely.

With ``--jailbreak`` three more kinds put the same answers behind attack-styled prompts
(``jailbreak_styles.py``), so that the style is seen on both labels:

- ``silver/jb-prefill`` (harmful): a wrapped AdvBench goal, its affirmative target put in the
  model's mouth, kept only without a refusal;
- ``silver/jb-refusal`` (benign): a wrapped AdvBench goal answered freely, kept only when refused;
- ``silver/jb-benign`` (benign): a wrapped JailbreakBench *benign* behavior, its own "Sure,
  here is ..." target put in the model's mouth.

Labels come from construction plus a string detector, not from people: use these rows to
fit and choose on dev, never as evidence of quality.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from benchmarks.jailbreak_styles import STYLES, wrap
from conscience.eval.dataset import EvalItem, write_jsonl
from conscience.eval.refusal import is_refusal

HARMFUL_KINDS = {"prefill", "jb-prefill"}
REFUSAL_KINDS = {"refusal", "jb-refusal"}

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--per-kind", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--jailbreak", action="store_true", help="add the jb-* kinds")
    args = parser.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from app.vllm_engine import native_dtype

    rng = random.Random(args.seed)
    advbench = _rows(args.data_dir / "advbench" / "harmful_behaviors.csv")
    xstest = _rows(args.data_dir / "xstest" / "xstest_prompts.csv")
    safe = [r for r in xstest if r["label"] == "safe"]
    rng.shuffle(advbench)
    n = args.per_kind
    prefill, refuse = advbench[: n * 2], advbench[n * 2 : n * 4]
    benign = rng.sample(safe, min(n, len(safe)))

    llm = LLM(
        model=args.model,
        enforce_eager=True,
        kv_cache_memory_bytes=2 * 2**30,
        dtype=native_dtype(),
    )
    tok = llm.get_tokenizer()
    # no per-request seed: on the CPU build it kills the engine when a prefill is chunked
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.7, top_p=0.9)

    def chat_ids(prompt: str) -> list[int]:
        return list(
            tok.apply_chat_template(
                [{"role": "user", "content": prompt}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        )

    jobs: list[tuple[str, str, str, list[int]]] = []  # kind, prompt, answer prefix, ids
    for r in prefill:
        target = r["target"].strip() + ":\n\n"
        jobs.append(("prefill", r["goal"], target, chat_ids(r["goal"]) + tok.encode(target)))
    for r in refuse:
        jobs.append(("refusal", r["goal"], "", chat_ids(r["goal"])))
    for r in benign:
        jobs.append(("benign", r["prompt"], "", chat_ids(r["prompt"])))
    if args.jailbreak:
        jbb_benign = _rows(args.data_dir / "jailbreakbench" / "behaviors" / "benign-behaviors.csv")
        for r in rng.sample(advbench, min(len(advbench), n * 2)):
            prompt = wrap(r["goal"], rng.choice(STYLES), rng)
            target = r["target"].strip() + ":\n\n"
            jobs.append(("jb-prefill", prompt, target, chat_ids(prompt) + tok.encode(target)))
        for r in rng.sample(advbench, min(len(advbench), n * 3)):
            prompt = wrap(r["goal"], rng.choice(STYLES), rng)
            jobs.append(("jb-refusal", prompt, "", chat_ids(prompt)))
        for r in rng.sample(jbb_benign, min(len(jbb_benign), n)):
            prompt = wrap(r["goal"], rng.choice(STYLES), rng)
            target = r["target"].strip() + ":\n\n"
            jobs.append(("jb-benign", prompt, target, chat_ids(prompt) + tok.encode(target)))
    outs = llm.generate([TokensPrompt(prompt_token_ids=j[3]) for j in jobs], params)

    kept: dict[str, list[EvalItem]] = {kind: [] for kind, *_ in jobs}
    for (kind, prompt, prefix, _), out in zip(jobs, outs, strict=True):
        answer = prefix + out.outputs[0].text
        refused = is_refusal(answer)
        if (kind in HARMFUL_KINDS and refused) or (kind in REFUSAL_KINDS and not refused):
            continue
        if len(kept[kind]) >= args.per_kind:
            continue
        kept[kind].append(
            EvalItem(
                id=f"silver-{kind}-{len(kept[kind])}",
                prompt=prompt,
                answer=answer,
                label="harmful" if kind in HARMFUL_KINDS else "benign",
                category=kind,
                source=f"silver/{kind}",
                split="dev",
            )
        )
    rows = [item for items in kept.values() for item in items]
    write_jsonl(rows, args.out)
    print({kind: len(items) for kind, items in kept.items()}, "->", args.out)


if __name__ == "__main__":
    main()
