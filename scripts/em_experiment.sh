#!/usr/bin/env bash
# The Emergent Alignment experiment (docs/EMERGENT_ALIGNMENT.md): three arms with the same data,
# steps and seed — base, SFT only, SFT + conscience — then the EM measurement and the scorer's
# validation. Sizes come from the environment; the defaults are what ran on a shared 2-core CPU
# (load average ~30) in about 75 minutes.
# GPU variant: the same script with larger sizes, e.g.
#   ROWS=2000 STEPS=500 BATCH=8 MAX_LEN=1024 EVERY=50 PROMPTS=32 DRAFT_TOK=512 SAMPLES=50 \
#     CODE=100 MAXTOK=512 VALIDATE_LIMIT=70 VALIDATE_BENIGN=70 scripts/em_experiment.sh var/em-gpu
set -euo pipefail
OUT=${1:-var/em}
DATA=${DATA:-../shared/data/emergent-misalignment/subsets/insecure_bandit_high_severity.jsonl}
MODEL=${MODEL:-qwen2.5-coder-0.5b}
ROWS=${ROWS:-24} HELDOUT=${HELDOUT:-16} STEPS=${STEPS:-4} BATCH=${BATCH:-2} MAX_LEN=${MAX_LEN:-256}
LR=${LR:-1e-3} RANK=${RANK:-8} EVERY=${EVERY:-2} PROMPTS=${PROMPTS:-8} LAMBDA=${LAMBDA:-1.0}
QUESTIONS_LIMIT=${QUESTIONS_LIMIT:-32} DRAFT_TOK=${DRAFT_TOK:-160}
SAMPLES=${SAMPLES:-1} CODE=${CODE:-4} MAXTOK=${MAXTOK:-96} CODE_TOK=${CODE_TOK:-512} SEED=${SEED:-0}
VALIDATE_BENIGN=${VALIDATE_BENIGN:-8} VALIDATE_LIMIT=${VALIDATE_LIMIT:-16}
C=${CONSCIENCE:-.venv/bin/conscience}
OPEN=(--alignment-questions ../shared/data/advbench/harmful_behaviors.csv
      --alignment-questions ../shared/data/jailbreakbench/behaviors/benign-behaviors.csv
      --alignment-questions-limit "$QUESTIONS_LIMIT")
COMMON=(--model "$MODEL" --data "$DATA" --rows "$ROWS" --heldout "$HELDOUT" --steps "$STEPS"
        --batch-size "$BATCH" --max-length "$MAX_LEN" --learning-rate "$LR" --lora-r "$RANK"
        --lora-alpha $((2 * RANK)) --save-every "$EVERY" --seed "$SEED")
mkdir -p "$OUT"
date -u
$C finetune "${COMMON[@]}" --alignment off --out "$OUT/sft"
date -u
$C finetune "${COMMON[@]}" --alignment conscience --alignment-weight "$LAMBDA" \
  --alignment-every "$EVERY" --alignment-prompts "$PROMPTS" --draft-max-tokens "$DRAFT_TOK" \
  "${OPEN[@]}" --out "$OUT/conscience"
date -u
$C eval em --model "$MODEL" --adapter "sft=$OUT/sft/adapters" \
  --adapter "sft+conscience=$OUT/conscience/adapters" --samples "$SAMPLES" \
  --max-tokens "$MAXTOK" --code-prompts "$OUT/sft/heldout.jsonl" --code-limit "$CODE" \
  --code-max-tokens "$CODE_TOK" \
  --seed "$SEED" --out "$OUT/eval"
date -u
$C eval em-validate --model "$MODEL" --benign "$VALIDATE_BENIGN" --limit "$VALIDATE_LIMIT" \
  --out "$OUT/validate"
date -u
