#!/usr/bin/env bash
# GPU smoke run: the vLLM backend, PPO (use_vllm, separate critic), SFT and GRPO for a few steps
# each on the embedded model, then one table (step time split into rollout / reward / update,
# peak GPU memory, tokens per second). No network: only the repository, its venv (with the
# vllm extra: pip install -e ".[vllm]") and data/06_models/base_model (make model).
#
#   benchmarks/gpu_smoke.sh                 # all stages, about 5-8 minutes on one GPU
#   benchmarks/gpu_smoke.sh --dry-run       # configs and files only (runs on CPU; tested)
#   STAGES="ppo sft" STEPS=5 benchmarks/gpu_smoke.sh
#
# Each stage runs in its own process with a time limit (STAGE_TIMEOUT, default 140 s, so the
# four stay under 10 minutes); a stage that fails or times out shows "not run" in the table
# and its log stays in $OUT/<stage>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
STAGES=${STAGES:-"vllm ppo sft grpo"}
STEPS=${STEPS:-3}
STAGE_TIMEOUT=${STAGE_TIMEOUT:-140}
OUT=${OUT:-}
DRY_RUN=0

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --steps) STEPS="$2"; shift ;;
    --stages) STAGES="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_smoke.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 KEDRO_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

for stage in $STAGES; do
  case "$stage" in vllm|ppo|sft|grpo) ;; *) echo "gpu_smoke.sh: unknown stage $stage" >&2; exit 2 ;; esac
done

if [ "$DRY_RUN" = 1 ]; then
  for stage in $STAGES; do
    "$PY" benchmarks/gpu_smoke.py --dry-run --stage "$stage" --steps "$STEPS"
  done
  echo "dry run: stages [$STAGES], $STEPS steps each, ${STAGE_TIMEOUT}s limit per stage"
  exit 0
fi

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/gpu-smoke.XXXXXX)
mkdir -p "$OUT"
for stage in $STAGES; do
  echo "== $stage (limit ${STAGE_TIMEOUT}s, log $OUT/$stage.log)"
  start=$(date +%s)
  if timeout "$STAGE_TIMEOUT" "$PY" benchmarks/gpu_smoke.py --stage "$stage" --steps "$STEPS" --out "$OUT" \
       >"$OUT/$stage.log" 2>&1; then
    echo "   done in $(( $(date +%s) - start )) s"
  else
    echo "   FAILED (exit $?) after $(( $(date +%s) - start )) s; last lines:"
    tail -n 15 "$OUT/$stage.log" | sed 's/^/   | /'
  fi
done
"$PY" benchmarks/gpu_smoke.py --table "$OUT"
