"""Wall time and peak memory of one PPO step, split into rollout, reward and update.

The phases are those of ``r2_write.rl.trainer.train`` (rollout -> reward_fn + token_scores ->
compute_rewards + compute_gae + ppo_update) on a policy and a frozen reference loaded from
``--model``. The reward uses a cheap deterministic *fake judge* (score = 1 + words / 20,
capped at 10) through the real ``process_reward_fn``, so the reward column is the reward
plumbing (parsing, batching, token placement), not judge inference.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` per phase; on CPU, the peak resident
set size (process RSS, sampled every 5 ms with psutil) during the phase.

Prompts are real WritingBench queries (``--prompts-file``, field ``query``), truncated to
``--max-prompt-length`` tokens.

    .venv/bin/python benchmarks/ppo_step.py --batch-sizes 2 4 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch

from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn
from r2_write.rl.model import PolicyWithValue, load_causal_lm
from r2_write.rl.ppo import compute_gae, compute_rewards, ppo_update, token_scores
from r2_write.rl.rollout import rollout
from r2_write.rl.ppo_config import PPOConfig

FALLBACK_PROMPTS = [
    "Write a short op-ed on why cities should plant more trees.",
    "Draft a product description for a solar-powered lantern.",
    "Write the opening paragraph of a mystery novel set in a lighthouse.",
    "Outline a lesson plan introducing fractions to ten-year-olds.",
]


def fake_judge(prompts, texts, rubrics):
    """Cheap deterministic judge: longer texts score higher (1..10)."""
    return [min(10.0, 1.0 + len(t.split()) / 20) for t in texts]


class PeakMemory:
    """Peak memory during a ``with`` block: CUDA allocator peak, or sampled process RSS."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mib = device, 0.0

    @contextmanager
    def measure(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        proc, stop = psutil.Process(), threading.Event()
        peak = [proc.memory_info().rss]

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.005)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.peak_mib = max(peak[0], proc.memory_info().rss) / 2**20


def one_step(policy, ref, tokenizer, optimizer, prompts, cfg, reward_fn, reward_cfg, device) -> dict[str, float]:
    """Run one PPO step and return seconds and peak MiB per phase."""
    mem, out = PeakMemory(device), {}

    def timed(name, fn):
        with mem.measure():
            t0 = time.perf_counter()
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out[f"{name}_s"] = time.perf_counter() - t0
        out[f"{name}_mib"] = mem.peak_mib
        return result

    ro = timed("rollout", lambda: rollout(policy, ref, tokenizer, prompts, cfg))

    def reward():
        results = reward_fn(prompts, ro.completions)
        return token_scores(ro, results, reward_cfg, cfg.process_weight)

    scores = timed("reward", reward)

    def update():
        rewards, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
        advantages, returns = compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)
        return ppo_update(policy, optimizer, ro, advantages, returns, cfg)

    timed("update", update)
    out["tokens"] = ro.response_mask.sum().item()
    return out


def load_prompts(path: str, n: int) -> list[str]:
    p = Path(path)
    prompts = [json.loads(line)["query"] for line in p.read_text().splitlines() if line.strip()] if p.exists() else []
    prompts = prompts or FALLBACK_PROMPTS
    return [prompts[i % len(prompts)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="data/06_models/base_model", help="Policy (and reference) directory.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 4], help="Rollouts per PPO step.")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-prompt-length", type=int, default=256)
    parser.add_argument("--ppo-epochs", type=int, default=1)
    parser.add_argument("--micro-batch-size", type=int, default=None, help="Forward/backward chunk (None = batch).")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    parser.add_argument("--repeats", type=int, default=1, help="Timed steps per batch size (median reported).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps before measuring.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument(
        "--prompts-file", default="../shared/benchmarks/writingbench/format_subset.jsonl", help="JSONL with 'query'."
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    torch.manual_seed(0)
    policy = PolicyWithValue(load_causal_lm(args.model).to(device))
    ref = load_causal_lm(args.model).to(device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [{"params": policy.lm.parameters(), "lr": 1e-6}, {"params": policy.value_head.parameters(), "lr": 1e-5}]
    )
    reward_cfg = ProcessRewardConfig()
    reward_fn = process_reward_fn(fake_judge, reward_cfg)

    def cfg_for(bs: int) -> PPOConfig:
        return PPOConfig(batch_size=bs, mini_batch_size=bs, micro_batch_size=args.micro_batch_size or bs,
                         ppo_epochs=args.ppo_epochs, max_new_tokens=args.max_new_tokens,
                         max_prompt_length=args.max_prompt_length)

    for _ in range(args.warmup):
        bs = min(args.batch_sizes)
        one_step(policy, ref, tokenizer, optimizer, load_prompts(args.prompts_file, bs), cfg_for(bs),
                 reward_fn, reward_cfg, device)

    mem_label = "peak alloc MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"device={device} model={args.model} max_new_tokens={args.max_new_tokens} "
          f"max_prompt_length={args.max_prompt_length} ppo_epochs={args.ppo_epochs} judge=fake "
          f"threads={torch.get_num_threads()}")
    header = (f"| batch | resp tokens | rollout s | reward ms | update s | step s | tok/s "
              f"| rollout {mem_label} | reward {mem_label} | update {mem_label} |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for bs in args.batch_sizes:
        runs = [
            one_step(policy, ref, tokenizer, optimizer, load_prompts(args.prompts_file, bs), cfg_for(bs),
                     reward_fn, reward_cfg, device)
            for _ in range(args.repeats)
        ]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        step_s = med["rollout_s"] + med["reward_s"] + med["update_s"]
        print(f"| {bs} | {med['tokens']:.0f} | {med['rollout_s']:.2f} | {med['reward_s'] * 1000:.1f} | "
              f"{med['update_s']:.2f} | {step_s:.2f} | {med['tokens'] / step_s:.1f} | {med['rollout_mib']:.0f} | "
              f"{med['reward_mib']:.0f} | {med['update_mib']:.0f} |")


if __name__ == "__main__":
    main()
