"""What the over-optimisation monitor costs a PPO stage at conf/base sizes (docs/monitor.md).

Runs the own PPO loop (r2_write.rl.trainer.train) on the embedded model (data/06_models/base_model)
with conf/base's ``ppo`` settings and conf/base's judge (probability mode, the embedded model), once
with ``ppo.monitor`` on (every step, ``--prompts`` held-out prompts) and reads the per-step times the
trainer logs: ``time/rollout``, ``time/reward``, ``time/update`` (the stage's own work) and
``time/monitor``. The cost share of a monitor measured every N steps is
``monitor / (N x step + monitor)``. Nothing is written outside a temporary directory; the judge's
answers go to a temporary cache (no cache hits from earlier runs).

    .venv/bin/python benchmarks/monitor_cost.py --prompts 8 --steps 2
"""

from __future__ import annotations

import argparse
import logging
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8, help="held-out prompts per measurement")
    ap.add_argument("--steps", type=int, default=2, help="PPO steps (each one measured)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from kedro.config import OmegaConfigLoader

    from r2_write.config import parse_params
    from r2_write.judge.reward import judge_score_fn
    from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn
    from r2_write.rl.monitor import monitor_judges
    from r2_write.rl.ppo_config import PPOConfig
    from r2_write.rl.trainer import train
    from r2_write.roles import judge_for
    from r2_write.settings import CONFIG_LOADER_ARGS

    params = OmegaConfigLoader(str(ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "base"})["parameters"]
    tmp = Path(tempfile.mkdtemp(prefix="monitor_cost_"))
    llm = {role: {**cfg, "cache_path": str(tmp / "cache.sqlite")} for role, cfg in params["llm"].items()}
    llm = {role: {**cfg, "model": str(ROOT / cfg["model"])} if not Path(cfg["model"]).is_absolute() else cfg
           for role, cfg in llm.items()}
    ppo = {k: v for k, v in params["ppo"].items() if k not in ("reward", "launch")}
    reward_cfg = parse_params(ProcessRewardConfig, params["ppo"]["reward"], "ppo.reward")
    cfg = parse_params(PPOConfig, {**ppo, "total_steps": args.steps, "save_every": 0, "output_dir": str(tmp / "ppo"),
                                   "monitor": {"every": 1, "prompts": args.prompts}}, "ppo")
    rows = [json.loads(line) for line in (ROOT / "data" / "01_raw" / "prompts.jsonl").read_text().splitlines() if line.strip()]
    prompts = [r["prompt"] for r in rows][: cfg.prompts_per_step * args.steps + args.prompts]
    score_fn = judge_score_fn(judge_for(llm, params["judge"]), params["generic_rubric"])
    t0 = time.perf_counter()
    out = train(str(ROOT / "data" / "06_models" / "base_model"), prompts, process_reward_fn(score_fn, reward_cfg), cfg,
                resume=False, reward_cfg=reward_cfg, judge_audit=score_fn,
                monitor_judges=monitor_judges(llm, params["judge"], params["generic_rubric"]))
    wall = time.perf_counter() - t0
    hist = out["history"]
    step = statistics.mean(sum(h.get(k, 0.0) for k in ("time/rollout", "time/reward", "time/update")) for h in hist)
    monitor = statistics.mean(h["time/monitor"] for h in hist)
    result = {"steps": args.steps, "held_out_prompts": args.prompts, "batch_size": cfg.batch_size,
              "max_new_tokens": cfg.max_new_tokens, "step_s": round(step, 2), "monitor_s": round(monitor, 2),
              "wall_s": round(wall, 1),
              "share_every": {n: round(monitor / (n * step + monitor), 3) for n in (1, 2, 5, 10)}}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
