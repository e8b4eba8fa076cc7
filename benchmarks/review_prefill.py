"""Review prompt tokens and prefill per layout and KV block size, from the tokenizer alone.

    python benchmarks/review_prefill.py MODEL_DIR --block 32 --draft-tokens 32

For each clean bench prompt (tagged as the bench tags it) with a draft of N tokens: the
``framework_first`` review prompt and the prefix it shares with every other request (cached
in whole blocks), and the ``continuation`` prompt, whose cached part is every whole block of
the draft's prompt and generated tokens (the last generated token is never fed back).
Computed, not measured: ``conscience bench`` and ``tests/app/test_review_reuse.py`` measure the
engine's own counts.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from app.conscience.frameworks import FrameworkCatalog
from app.conscience.prompts import DraftTokens, review_prompt_ids
from app.settings import ReviewLayout
from conscience.bench.load import read_prompts, tagged

PROMPTS = Path(__file__).resolve().parent / "prompts" / "clean.jsonl"
FILLER = " Mix flour and water, knead well, let it rise overnight and bake it hot." * 8


class TokenizerEngine:
    """The tokenizer half of ``app.engine.Engine`` over a Hugging Face tokenizer."""

    def __init__(self, model_dir: str):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)

    def encode_chat(self, messages) -> list[int]:
        return list(
            self.tok.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
            )
        )

    def encode_text(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def token_count(self, text: str) -> int:
        return len(self.encode_text(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.encode_text(text)
        if len(ids) <= max_tokens:
            return text
        half = max_tokens // 2
        return f"{self.tok.decode(ids[:half])}\n[...]\n{self.tok.decode(ids[-half:])}"

    def special_token_ids(self) -> frozenset[int]:
        return frozenset(self.tok.all_special_ids)


def _shared(prompts: list[list[int]]) -> int:
    first = prompts[0]
    shared = len(first)
    for other in prompts[1:]:
        same = next((i for i, (a, b) in enumerate(zip(other, first, strict=False)) if a != b), None)
        shared = min(shared, same if same is not None else min(len(other), len(first)))
    return shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--draft-tokens", type=int, default=32)
    parser.add_argument("--framework", action="append", default=None)
    args = parser.parse_args()
    engine = TokenizerEngine(args.model_dir)
    draft_ids = engine.encode_text(FILLER)[: args.draft_tokens]
    draft = engine.tok.decode(draft_ids)
    chats = [tagged(p) for p in read_prompts(PROMPTS)]
    catalog = FrameworkCatalog.load()
    print("| framework | block | framework_first prompt | cached (shared) | prefill |", end="")
    print(" continuation prompt | cached (draft) | prefill |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for name in args.framework or ["introspective", "three_laws"]:
        fw = catalog.get(name)
        first = [
            review_prompt_ids(engine, fw, ReviewLayout.framework_first, c, draft, 2048)
            for c in chats
        ]
        first_cached = _shared(first) // args.block * args.block
        cont, cont_cached = [], []
        for chat in chats:
            drafted = DraftTokens(engine.encode_chat(chat), draft_ids)
            ids = review_prompt_ids(
                engine, fw, ReviewLayout.continuation, chat, draft, 2048, drafted
            )
            cont.append(len(ids))
            reused = len(drafted.prompt_ids) + len(draft_ids) - 1
            cont_cached.append(reused // args.block * args.block)
        first_len = statistics.mean(len(p) for p in first)
        cont_len, cached = statistics.mean(cont), statistics.mean(cont_cached)
        print(
            f"| {name} | {args.block} | {first_len:.0f} | {first_cached} | "
            f"{first_len - first_cached:.0f} | {cont_len:.0f} | {cached:.0f} | "
            f"{cont_len - cached:.0f} |"
        )


if __name__ == "__main__":
    main()
