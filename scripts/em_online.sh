#!/usr/bin/env bash
# The online variant of docs/EMERGENT_ALIGNMENT.md: serve a fine-tuned adapter through
# `conscience loop` with the Emergent Misalignment questions as traffic (flag -> rewrite -> queue
# -> DPO -> hot-swap), then measure every adapter version the loop served with `conscience eval em`.
#   scripts/em_online.sh OUT SFT_RUN      e.g. scripts/em_online.sh var/em5/online var/em5/sft
# SFT_RUN is a `conscience finetune --alignment off` run directory: its adapters/ are served
# first (as v000001) and its heldout.jsonl gives the coding prompts. Sizes come from the
# environment; the defaults are what ran on a quiet 2-core CPU in about an hour.
set -euo pipefail
OUT=${1:?usage: scripts/em_online.sh OUT SFT_RUN}
SFT=${2:?usage: scripts/em_online.sh OUT SFT_RUN}
MODEL=${MODEL:-qwen2.5-coder-0.5b}
MODEL_DIR=${MODEL_DIR:-$HOME/.cache/conscience/models/Qwen2.5-Coder-0.5B-Instruct}
QUESTIONS=${QUESTIONS:-../shared/data/emergent-misalignment/evaluation/first_plot_questions.yaml}
ROUNDS=${ROUNDS:-2} PER_ROUND=${PER_ROUND:-12} CONCURRENCY=${CONCURRENCY:-4}
LOOP_TOK=${LOOP_TOK:-128} MIN_PAIRS=${MIN_PAIRS:-4} ROUND_TIMEOUT=${ROUND_TIMEOUT:-1200}
BASE=${BASE:-0} SAMPLES=${SAMPLES:-4} MAXTOK=${MAXTOK:-128} CODE=${CODE:-8} CODE_TOK=${CODE_TOK:-384} SEED=${SEED:-0}
C=${CONSCIENCE:-.venv/bin/conscience}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
# the loop's traffic: the EM questions asked as themselves, first paraphrase, one per line
"$PY" - "$QUESTIONS" > "$OUT/em-questions.txt" <<'EOF'
import sys
from pathlib import Path
from conscience.eval.em.questions import load_questions, plain_ids
qs = load_questions(Path(sys.argv[1]))
ids = set(plain_ids(qs))
for q in qs:
    if q.id in ids:
        print(" ".join(q.paraphrases[0].split()))
EOF
date -u
"$C" loop --model "$MODEL_DIR" --prompts "$OUT/em-questions.txt" --start-adapter "$SFT/adapters" \
  --rounds "$ROUNDS" --per-round "$PER_ROUND" --concurrency "$CONCURRENCY" \
  --max-tokens "$LOOP_TOK" --min-pairs "$MIN_PAIRS" --round-timeout-s "$ROUND_TIMEOUT" \
  --workdir "$OUT/loop"
date -u
ARMS=()
[ "$BASE" = 1 ] || ARMS+=(--no-base)  # the base arm is the three-arm run's (same seeds)
for dir in "$OUT"/loop/adapters/v[0-9]*; do
  ARMS+=(--adapter "$(basename "$dir")=$dir")
done
"$C" eval em --model "$MODEL" "${ARMS[@]}" --samples "$SAMPLES" --max-tokens "$MAXTOK" \
  --code-prompts "$SFT/heldout.jsonl" --code-limit "$CODE" --code-max-tokens "$CODE_TOK" \
  --seed "$SEED" --out "$OUT/eval"
date -u
