#!/usr/bin/env bash
# GPU smoke test of the veRL engine: 1 GPU, a small model, 2 PPO steps, kill, resume, merged model read by the catalog.
#
#   make verl-env && bash benchmarks/verl_gpu_smoke.sh   (after a run that produced sft.model)
#
# NOT RUN YET: it needs an NVIDIA GPU and veRL's environment (.venv-verl, with vLLM), neither of which the
# development machines have (docs/verl.md, "What has not run").
set -euo pipefail
OUT=$(mktemp -d /tmp/verl-smoke.XXXX)
PARAMS="ppo.engine=verl,ppo.critic=separate,ppo.batch_size=4,ppo.mini_batch_size=2,ppo.max_new_tokens=256,\
ppo.max_prompt_length=256,ppo.total_steps=2,ppo.save_every=1,ppo.reuse_trained=false,ppo.output_dir=$OUT,\
ppo.verl.n_gpus_per_node=1,ppo.verl.ulysses_sequence_parallel_size=1,ppo.verl.ppo_max_token_len_per_gpu=4096,\
ppo.vllm_gpu_memory_utilization=0.4,ppo.vllm_tensor_parallel_size=1,ppo.check_length_budget=false"
test -x .venv-verl/bin/python || { echo "veRL environment missing: make verl-env"; exit 2; }
nvidia-smi -L | head -1

# 1. start, kill after the first checkpoint
.venv/bin/kedro run --pipelines ppo --params "$PARAMS" > "$OUT/run1.log" 2>&1 &
PID=$!
for _ in $(seq 1 180); do
  [ -f "$OUT/checkpoints/latest_checkpointed_iteration.txt" ] && break; sleep 5
done
test -f "$OUT/checkpoints/latest_checkpointed_iteration.txt" || { echo "no checkpoint after 15 min"; kill "$PID"; exit 1; }
kill "$PID"; wait "$PID" || true
pkill -P "$PID" 2>/dev/null || true
echo "killed after step $(cat "$OUT/checkpoints/latest_checkpointed_iteration.txt")"

# 2. resume: the same output_dir, veRL's resume_mode=auto starts from the newest checkpoint
.venv/bin/kedro run --pipelines ppo --params "$PARAMS" 2>&1 | tee "$OUT/run2.log"
grep -q "global_step_1" "$OUT/run2.log" && echo "resumed from global_step_1"
test "$(cat "$OUT/checkpoints/latest_checkpointed_iteration.txt")" = 2

# 3. the merged actor is the ppo.model catalog version
.venv/bin/python - <<PY
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from pathlib import Path
bootstrap_project(Path.cwd())
with KedroSession.create() as session:
    model_dir = session.load_context().catalog.load("ppo.model")
from transformers import AutoModelForCausalLM
print("catalog ppo.model:", model_dir, sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters()))
PY
