"""One stage of the GPU smoke run (``benchmarks/gpu_smoke.sh``), or the table of all of them.

No network: the embedded model (``data/06_models/base_model``, ``make model``), the raw
prompts and the venv are all it uses. Each stage runs in its own process (vLLM holds its GPU
memory until the process ends) and writes one JSON row to ``--out``:

    vllm   the vLLM backend (``r2_write.llm``): one batch of chat completions
    ppo    ``r2_write.rl.trainer.train`` with ``use_vllm`` and the separate critic (bf16, gradient
           checkpointing), reward = the process reward with the embedded model as judge
    sft    ``r2_write.training.sft.train_sft`` (TRL SFTTrainer, bf16)
    grpo   ``r2_write.training.grpo.train_grpo`` (TRL GRPOTrainer, vLLM colocate), outcome reward

Columns: seconds per step split into rollout / reward / update (what the stage can tell
apart; GRPO's rollout and update are one TRL step), peak GPU memory (this process's torch
allocator, and the whole device's used memory sampled every 0.1 s, which includes vLLM's
engine process), and tokens per second (generated tokens per rollout second; trained tokens
per update second for SFT).

    python benchmarks/gpu_smoke.py --stage ppo --out /tmp/smoke     # one stage
    python benchmarks/gpu_smoke.py --table /tmp/smoke               # the markdown table
    python benchmarks/gpu_smoke.py --dry-run                        # configs and files only (CPU)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("vllm", "ppo", "sft", "grpo")
SIZES = {"prompts": 16, "steps": 3, "max_new_tokens": 256}


def prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data" / "01_raw" / "prompts.jsonl").read_text().splitlines() if line.strip()]
    return [r["prompt"] for r in rows[:n]]


def trajectories(prompt_list: list[str]) -> list[str]:
    """SFT targets in the trajectory format (plan, draft, reflection, revision, answer)."""
    return [f"<think>\n<plan>\nAnswer: {p[:60]}\n</plan>\n<draft>\nA first answer.\n</draft>\n<reflection>\nThe draft "
            f"lacks detail because it is short.\n</reflection>\n<revision>\nA longer, detailed answer.\n</revision>\n"
            f"</think>\nA longer, detailed answer." for p in prompt_list]


def stage_configs(stage: str, model: str, steps: int, max_new_tokens: int, out_dir: str) -> dict:
    """The validated configuration objects of ``stage`` (what ``--dry-run`` checks)."""
    from r2_write.llm.config import LLMConfig

    judge_llm = {"judge": {"backend": "transformers", "model": model, "device": "cuda", "dtype": "bfloat16",
                           "cache_path": None, "batch_size": 16}}
    LLMConfig(**judge_llm["judge"])  # the judge's settings are valid
    if stage == "vllm":
        return {"llm": LLMConfig(backend="vllm", model=model, dtype="bfloat16", cache_path=None, batch_size=64)}
    if stage == "ppo":
        from r2_write.rl.ppo_config import PPOConfig

        return {"ppo": PPOConfig(use_vllm=True, critic="separate", critic_warmup_steps=1, total_steps=steps, batch_size=8,
                                 mini_batch_size=4, micro_batch_size=4, max_new_tokens=max_new_tokens,
                                 max_prompt_length=256, mixed_precision="bf16", gradient_checkpointing=True,
                                 vllm_gpu_memory_utilization=0.3, save_every=0, learning_rate=1e-6, output_dir=out_dir),
                "llm": judge_llm}
    if stage == "sft":
        from r2_write.training.sft import SFTParams

        return {"sft": SFTParams(max_steps=steps, per_device_train_batch_size=4, max_length=512, bf16=True,
                                 gradient_checkpointing=True, output_dir=out_dir)}
    if stage == "grpo":
        from r2_write.training.grpo import GRPOParams

        return {"grpo": GRPOParams(max_steps=steps, per_device_train_batch_size=8, num_generations=4,
                                   max_completion_length=max_new_tokens, use_vllm=True, bf16=True,
                                   gradient_checkpointing=True, output_dir=out_dir),
                "llm": judge_llm}
    raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")


class PeakMemory:
    """Peak GPU memory: torch's allocator in this process, and device-wide used memory sampled every 0.1 s."""

    def __enter__(self):
        import torch

        torch.cuda.reset_peak_memory_stats()
        self.device_peak, self._stop = 0, threading.Event()

        def sample():
            while not self._stop.is_set():
                free, total = torch.cuda.mem_get_info()
                self.device_peak = max(self.device_peak, total - free)
                time.sleep(0.1)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        import torch

        self._stop.set()
        self._thread.join()
        self.torch_peak = torch.cuda.max_memory_allocated()


def _judge_reward(llm: dict, kind: str):
    import yaml

    from r2_write.rewards.spec import judge_reward

    base = yaml.safe_load((ROOT / "conf" / "base" / "parameters.yml").read_text())
    reward_fn, judge = judge_reward(llm, base["judge"], base["generic_rubric"], kind=kind)
    return reward_fn


def run_stage(stage: str, model: str, steps: int, max_new_tokens: int) -> dict:
    """Run ``stage`` on the GPU; returns its table row."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run benchmarks/gpu_smoke.sh on a GPU machine (--dry-run checks the rest)")
    work = tempfile.mkdtemp(prefix=f"smoke-{stage}-")
    cfg = stage_configs(stage, model, steps, max_new_tokens, work)
    row = {"stage": stage, "steps": steps, "gpu": torch.cuda.get_device_name()}
    with PeakMemory() as peak:
        if stage == "vllm":
            from r2_write.llm.client import LLMClient
            from r2_write.llm.config import SamplingParams

            client = LLMClient(cfg["llm"])
            conversations = [[{"role": "user", "content": p}] for p in prompts(SIZES["prompts"])]
            client.generate(conversations[:2], SamplingParams(max_new_tokens=8))  # engine start-up outside the timing
            start = time.perf_counter()
            out = client.generate(conversations, SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens))
            seconds = time.perf_counter() - start
            row.update(steps=1, rollout_s=seconds, tokens_per_s=sum(g.completion_tokens for g in out) / seconds)
        elif stage == "ppo":
            from r2_write.rl.trainer import train

            ppo = cfg["ppo"]
            result = train(model, prompts(SIZES["prompts"]), _judge_reward(cfg["llm"], "process"), ppo)
            history = result["history"][1:] or result["history"]  # step 1 includes vLLM's warm-up
            mean = lambda key: sum(h.get(key, 0.0) for h in history) / len(history)  # noqa: E731
            row.update(rollout_s=mean("time/rollout"), reward_s=mean("time/reward"),
                       update_s=mean("time/update") + mean("time/critic_update"),
                       tokens_per_s=ppo.batch_size * mean("response/length_tokens") / max(mean("time/rollout"), 1e-9))
        elif stage == "sft":
            from r2_write.training.sft import train_sft

            sft = cfg["sft"]
            data = prompts(SIZES["prompts"])
            start = time.perf_counter()
            _, history = train_sft(model, data, trajectories(data), sft)
            seconds = (time.perf_counter() - start) / steps
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)
            per_example = sum(len(tokenizer(p + t)["input_ids"]) for p, t in zip(data, trajectories(data))) / len(data)
            row.update(update_s=seconds, tokens_per_s=sft.per_device_train_batch_size * min(per_example, sft.max_length) / seconds)
        elif stage == "grpo":
            from r2_write.training.grpo import train_grpo

            grpo = cfg["grpo"]
            reward_fn, reward_seconds = _judge_reward(cfg["llm"], "outcome"), [0.0]

            def timed_reward(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return reward_fn(*args, **kwargs)
                finally:
                    reward_seconds[0] += time.perf_counter() - start

            data = prompts(SIZES["prompts"])
            start = time.perf_counter()
            _, logs = train_grpo(model, data, [None] * len(data), timed_reward, grpo)
            seconds = (time.perf_counter() - start) / steps
            lengths = [h.get("completions/mean_length", 0.0) for h in logs if "completions/mean_length" in h]
            completions = grpo.per_device_train_batch_size * grpo.gradient_accumulation_steps
            row.update(reward_s=reward_seconds[0] / steps, update_s=seconds - reward_seconds[0] / steps,
                       tokens_per_s=completions * (sum(lengths) / len(lengths) if lengths else 0.0) / seconds,
                       note="rollout inside TRL's step (update_s)")
    row.update(torch_peak_gib=peak.torch_peak / 2**30, device_peak_gib=peak.device_peak / 2**30)
    return row


def table(rows: list[dict]) -> str:
    """The markdown table of the stage rows (missing stages and values shown as '-')."""
    head = ["stage", "steps", "rollout s/step", "reward s/step", "update s/step", "peak GPU GiB (torch / device)",
            "tokens/s", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v, spec=".2f": "-" if v is None else format(v, spec)  # noqa: E731
    for stage in STAGES:
        r = next((r for r in rows if r.get("stage") == stage), {"stage": stage, "note": "not run"})
        memory = "-" if "torch_peak_gib" not in r else f"{r['torch_peak_gib']:.1f} / {r['device_peak_gib']:.1f}"
        lines.append(f"| {stage} | {r.get('steps', '-')} | {fmt(r.get('rollout_s'))} | {fmt(r.get('reward_s'))} | "
                     f"{fmt(r.get('update_s'))} | {memory} | {fmt(r.get('tokens_per_s'), '.0f')} | {r.get('note', '')} |")
    gpu = next((r["gpu"] for r in rows if r.get("gpu")), None)
    return (f"GPU: {gpu}\n\n" if gpu else "") + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU smoke run of the training stages (see benchmarks/gpu_smoke.sh)")
    parser.add_argument("--stage", choices=[*STAGES, "all"], default="all", help="stage to run (default: all; dry run)")
    parser.add_argument("--model", default=str(ROOT / "data" / "06_models" / "base_model"),
                        help="local model directory (default: the embedded model, `make model`)")
    parser.add_argument("--steps", type=int, default=SIZES["steps"], help="training steps per stage")
    parser.add_argument("--max-new-tokens", type=int, default=SIZES["max_new_tokens"], help="rollout length")
    parser.add_argument("--out", type=Path, help="directory for the stage's JSON row")
    parser.add_argument("--table", type=Path, metavar="DIR", help="print the table of the rows in DIR and exit")
    parser.add_argument("--dry-run", action="store_true", help="check configs and files, print the plan, run nothing")
    args = parser.parse_args(argv)

    if args.table:
        rows = [json.loads(p.read_text()) for p in sorted(args.table.glob("*.json"))]
        print(table(rows))
        return 0
    if args.steps < 1 or args.max_new_tokens < 8:
        parser.error("--steps must be >= 1 and --max-new-tokens >= 8")
    model = Path(args.model)
    if not (model / "config.json").exists():
        parser.error(f"no model in {model} (run `make model` for the embedded one)")
    if not prompts(1):
        parser.error("data/01_raw/prompts.jsonl holds no prompt")
    stages = STAGES if args.stage == "all" else (args.stage,)
    if args.dry_run:
        import importlib.util

        for stage in stages:
            configs = stage_configs(stage, str(model), args.steps, args.max_new_tokens, "/tmp/smoke-dry-run")
            print(f"dry run: {stage}: " + "; ".join(f"{k}={type(v).__name__}" for k, v in configs.items()))
        print(f"dry run: model {model}, {len(prompts(SIZES['prompts']))} prompts, vllm importable: "
              f"{importlib.util.find_spec('vllm') is not None}")
        return 0
    if args.stage == "all":
        parser.error("--stage is needed to run (each stage in its own process: see gpu_smoke.sh)")
    row = run_stage(args.stage, str(model), args.steps, args.max_new_tokens)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{STAGES.index(args.stage)}-{args.stage}.json").write_text(json.dumps(row))
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
