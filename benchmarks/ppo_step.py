"""One PPO step against its floors and against TRL's GRPOTrainer, same model, batch and tokens.

The step is that of ``r2_write.rl.trainer.train`` (rollout -> reward_fn + token_scores ->
compute_rewards + compute_gae + ppo_update) on a policy and a frozen reference loaded from
``--model``. Measured in the same run, on the same model, prompts and token counts:

* **rollout floor**: one plain ``model.generate`` of the batch (sampling, the rollout's
  response width forced with ``min_new_tokens``): what any RL trainer pays to sample.
  Target: rollout <= 1.15 x floor.
* **update floor**: one plain forward + backward of the policy (log-likelihood of the
  responses, logits of the response positions only) plus one no-grad forward of the reference
  over the batch. Target: update <= 1.3 x floor per PPO epoch (the epoch's mini-batch passes
  cover the batch once).
* **reward share**: the reward (``process_reward_fn`` with a stub judge: score = 1 + words /
  20, capped at 10, plus ``token_scores``) over the step. Target < 5%. A base model writes no
  ``<think>`` trajectory, so its completions get the format penalty unjudged; the reward is
  therefore also timed (outside the step) on well-formed trajectories made of the same texts.
* **peer**: TRL's ``GRPOTrainer`` driven as ``r2_write.training.grpo`` drives it (chat-templated
  prompts, left padding, the stub judge through ``outcome_reward_fn``, beta = 0.001 so a
  reference runs), ``per_device_train_batch_size`` = the batch, ``max_completion_length`` =
  ``--max-new-tokens``, one optimizer step per step; compared by time per generated token (PPO
  step / TRL step). Each step of both samples 2 responses to each of batch / 2 prompts (GRPO's
  groups; PPO as with ``rollouts_per_prompt: 2``), the same prompts in the same order.

Where the time goes is measured by timing the rollout's and update's parts in place
(generate, policy scoring forward, reference forward, decoding; update forward, optimizer
step, the rest = loss, backward, clipping).

    .venv/bin/python benchmarks/ppo_step.py [--batch-sizes 2 4] [--max-new-tokens 32] [--no-trl]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import psutil
import torch

import r2_write.rl.ppo as ppo_mod
import r2_write.rl.rollout as rollout_mod
from r2_write.prompts.policy import policy_messages
from r2_write.rewards.process import ProcessRewardConfig, outcome_reward_fn, process_reward_fn
from r2_write.rl.model import PolicyWithValue, load_causal_lm
from r2_write.rl.ppo import compute_gae, compute_rewards, ppo_update, token_scores
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import encode_prompts, rollout

FALLBACK_PROMPTS = [
    "Write a short op-ed on why cities should plant more trees.",
    "Draft a product description for a solar-powered lantern.",
    "Write the opening paragraph of a mystery novel set in a lighthouse.",
    "Outline a lesson plan introducing fractions to ten-year-olds.",
]
GRPO_GENERATIONS = 2


def fake_judge(prompts, texts, rubrics):
    """Cheap deterministic judge: longer texts score higher (1..10)."""
    return [min(10.0, 1.0 + len(t.split()) / 20) for t in texts]


def well_formed(text: str) -> str:
    """A draft -> reflection -> revision trajectory around ``text`` (three versions to judge)."""
    return (f"<think>\n<draft>\n{text}\n</draft>\n<reflection>\nThe draft could be tighter.\n</reflection>\n"
            f"<revision>\n{text} (tightened)\n</revision>\n</think>\n{text} (final)")


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


class Parts:
    """Seconds spent in named functions while :meth:`timing` is active (wrapped in place)."""

    def __init__(self, device: torch.device):
        self.device, self.s = device, Counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            self._sync()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._sync()
                self.s[name] += time.perf_counter() - t0

        return timed

    @contextmanager
    def timing(self, lm, optimizer):
        """Time the rollout's parts (generate, scoring forwards, decoding) and the update's
        (forward, optimizer step) where the project's code calls them."""
        with ExitStack() as stack:
            for name, attr in (("generate", "generate"),):
                stack.enter_context(mock.patch.object(lm, attr, self.wrap(name, getattr(lm, attr))))
            for name, fn in (("policy scoring", "response_scores"), ("reference", "reference_logprobs"),
                             ("decode", "decode_with_offsets"), ("encode", "encode_prompts")):
                stack.enter_context(mock.patch.object(rollout_mod, fn, self.wrap(name, getattr(rollout_mod, fn))))
            stack.enter_context(mock.patch.object(
                ppo_mod, "response_scores", self.wrap("update forward", ppo_mod.response_scores)))
            stack.enter_context(mock.patch.object(optimizer, "step", self.wrap("optimizer step", optimizer.step)))
            yield self


def one_step(policy, ref, tokenizer, optimizer, prompts, cfg, reward_fn, reward_cfg, device) -> dict:
    """Run one PPO step: seconds and peak MiB per phase, seconds per part, and the rollout."""
    mem, out, parts = PeakMemory(device), {}, Parts(device)

    def timed(name, fn):
        with mem.measure():
            t0 = time.perf_counter()
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out[f"{name}_s"] = time.perf_counter() - t0
        out[f"{name}_mib"] = mem.peak_mib
        return result

    with parts.timing(policy.lm, optimizer):
        ro = timed("rollout", lambda: rollout(policy, ref, tokenizer, prompts, cfg))

        def reward():
            results = reward_fn(prompts, ro.completions, truncated=ro.truncated.tolist())
            out["malformed"] = sum(r["outcome"] is None for r in results)
            return token_scores(ro, results, reward_cfg, cfg.process_weight)

        scores = timed("reward", reward)

        def update():
            rewards, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
            advantages, returns = compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)
            return ppo_update(policy, optimizer, ro, advantages, returns, cfg)

        timed("update", update)
    out.update({f"part {k}": v for k, v in parts.s.items()})
    # the base model writes no <think> trajectory, so its completions are never judged: time the
    # reward once more (outside the step) on well-formed trajectories made of the same texts
    t0 = time.perf_counter()
    judged = reward_fn(prompts, [well_formed(t) for t in ro.completions])
    out["reward_wf_s"] = time.perf_counter() - t0
    out["reward_wf_judged"] = sum(r["outcome"] is not None for r in judged)
    out["tokens"] = ro.response_mask.sum().item()
    out["prompt_tokens"] = ro.query_mask.sum().item()
    out["rollout"] = ro
    return out


def rollout_floor(lm, ro, tokenizer, device) -> float:
    """Seconds of one plain ``generate`` of the batch, as many new tokens as the rollout's width."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = ro.responses.shape[1]
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        lm.generate(input_ids=ro.queries, attention_mask=ro.query_mask, do_sample=True, top_k=0,
                    max_new_tokens=width, min_new_tokens=width, pad_token_id=pad)
    _sync(device)
    return time.perf_counter() - t0


def update_floor(lm, ref, ro, device) -> float:
    """Seconds of one plain forward + backward of the policy and one no-grad forward of the reference."""
    ids, att, n = ro.input_ids, ro.attention_mask, ro.responses.shape[1]
    lm.zero_grad(set_to_none=True)
    _sync(device)
    t0 = time.perf_counter()
    logits = lm(input_ids=ids, attention_mask=att, logits_to_keep=n + 1).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, ro.responses.unsqueeze(-1)).squeeze(-1)
    loss = -(logp * ro.response_mask).sum() / ro.response_mask.sum().clamp(min=1)
    loss.backward()
    with torch.no_grad():
        ref(input_ids=ids, attention_mask=att, logits_to_keep=n + 1)
    _sync(device)
    seconds = time.perf_counter() - t0
    lm.zero_grad(set_to_none=True)
    return seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_prompts(path: str, n: int, tokenizer, max_length: int) -> list[str]:
    """``n`` prompts whose chat-templated form fits ``max_length`` tokens (longer queries are cut),
    so PPO (which keeps the last ``max_length`` tokens) and TRL (which keeps all) see the same tokens."""
    p = Path(path)
    prompts = [json.loads(line)["query"] for line in p.read_text().splitlines() if line.strip()] if p.exists() else []
    prompts = prompts or FALLBACK_PROMPTS
    out = []
    for i in range(n):
        text = prompts[i % len(prompts)]
        while True:
            templated = tokenizer.apply_chat_template(policy_messages(text), tokenize=False, add_generation_prompt=True)
            excess = len(tokenizer(templated, add_special_tokens=False)["input_ids"]) - max_length
            if excess <= 0:
                break
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            text = tokenizer.decode(ids[: max(1, len(ids) - excess - 1)])
        out.append(text)
    return out


def trl_grpo(model_dir: str, prompts: list[str], batch: int, args, device: torch.device) -> dict[str, float]:
    """Median seconds and generated tokens per GRPOTrainer step (after ``args.warmup`` untimed steps)."""
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    steps: list[dict[str, float]] = []
    tokens: list[int] = []
    prompt_tokens: list[int] = []
    reward = outcome_reward_fn(fake_judge)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}

    def rubric_reward(prompts, completions, completion_ids=None, **kwargs):  # as training/grpo.py wraps it
        tokens.append(sum(len(ids) for ids in completion_ids))
        prompt_tokens.append(sum(len(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True,
                                                                  return_dict=False)) for p in prompts))
        truncated = [not ids or ids[-1] not in ends for ids in completion_ids]
        return reward(prompts, completions, truncated=truncated, **kwargs)

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            _sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **kw):
            _sync(device)
            steps.append({"s": time.perf_counter() - self.t0, "tokens": tokens[-1], "prompt_tokens": prompt_tokens[-1]})

    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(
            output_dir=out, learning_rate=1e-6, max_steps=args.warmup + args.repeats,
            per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_generations=GRPO_GENERATIONS,
            max_completion_length=args.max_new_tokens, temperature=1.0, beta=0.001, seed=0, logging_steps=1,
            save_strategy="no", report_to="none", use_cpu=device.type == "cpu", disable_tqdm=True,
            shuffle_dataset=False,
        )
        # step k: the distinct prompts of PPO's step k, in order (no shuffle), GRPO_GENERATIONS samples each
        data = Dataset.from_list([{"prompt": policy_messages(p), "rubrics": None} for p in prompts])
        trainer = GRPOTrainer(model=model_dir, reward_funcs=[rubric_reward], args=cfg, train_dataset=data,
                              processing_class=tokenizer, callbacks=[StepClock()])
        trainer.remove_callback(PrinterCallback)  # no log dict per step between the tables
        trainer.train()
    timed = steps[args.warmup:] or steps
    return {k: statistics.median(x[k] for x in timed) for k in ("s", "tokens", "prompt_tokens")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="data/06_models/base_model", help="Policy (and reference) directory.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 4], help="Rollouts per PPO step.")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-prompt-length", type=int, default=256)
    parser.add_argument("--ppo-epochs", type=int, default=1)
    parser.add_argument("--micro-batch-size", type=int, default=None, help="Forward/backward chunk (None = batch).")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed steps per batch size (median reported).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps before measuring.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--no-trl", action="store_true", help="Leave out the TRL GRPOTrainer peer.")
    parser.add_argument(
        "--prompts-file", default="../shared/benchmarks/writingbench/format_subset.jsonl", help="JSONL with 'query'."
    )
    args = parser.parse_args()
    for bs in args.batch_sizes:
        if bs % GRPO_GENERATIONS:
            parser.error(f"batch sizes must be multiples of {GRPO_GENERATIONS} (GRPO's group size)")

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
    # every step: batch / GRPO_GENERATIONS prompts, GRPO_GENERATIONS samples of each (GRPO's groups; PPO
    # samples the same batch, as with rollouts_per_prompt = GRPO_GENERATIONS)
    prompts_for = {bs: load_prompts(args.prompts_file, bs // GRPO_GENERATIONS * (args.warmup + args.repeats),
                                    tokenizer, args.max_prompt_length) for bs in args.batch_sizes}

    def cfg_for(bs: int) -> PPOConfig:
        return PPOConfig(batch_size=bs, mini_batch_size=bs, micro_batch_size=args.micro_batch_size or bs,
                         ppo_epochs=args.ppo_epochs, max_new_tokens=args.max_new_tokens,
                         max_prompt_length=args.max_prompt_length)

    rows = []
    for bs in args.batch_sizes:
        prompts = prompts_for[bs]
        runs = []
        for k in range(args.warmup + args.repeats):
            half = bs // GRPO_GENERATIONS
            batch = [p for p in prompts[k * half : (k + 1) * half] for _ in range(GRPO_GENERATIONS)]
            run = one_step(policy, ref, tokenizer, optimizer, batch, cfg_for(bs), reward_fn, reward_cfg, device)
            ro = run.pop("rollout")
            run["rollout_floor_s"] = rollout_floor(policy.lm, ro, tokenizer, device)
            run["update_floor_s"] = update_floor(policy.lm, ref, ro, device)
            if k >= args.warmup:
                runs.append(run)
        med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in set().union(*runs)}
        med["bs"] = bs
        med["step_s"] = med["rollout_s"] + med["reward_s"] + med["update_s"]
        if not args.no_trl:
            trl = trl_grpo(args.model, prompts, bs, args, device)
            med["trl_s"], med["trl_tokens"], med["trl_prompt_tokens"] = trl["s"], trl["tokens"], trl["prompt_tokens"]
        rows.append(med)

    print_table(rows, args, device)


def print_table(rows: list[dict], args, device: torch.device) -> None:
    load = os.getloadavg()
    mem_label = "peak alloc MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"\nPPO step vs its floors and TRL GRPOTrainer: model {args.model}, device {device}, "
          f"{torch.get_num_threads()} torch threads, max_new_tokens {args.max_new_tokens}, max_prompt_length "
          f"{args.max_prompt_length}, ppo_epochs {args.ppo_epochs}, one mini-batch = the batch, batch / 2 prompts x "
          f"{GRPO_GENERATIONS} samples per step, stub judge; "
          f"median of {args.repeats} steps after {args.warmup} warm-up; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    header = ("| batch | prompt tok | resp tok | rollout s | generate floor s | rollout/floor | update s "
              "| fwd+bwd+ref floor s | update/floor per epoch | reward ms | reward % of step | step s "
              f"| PPO ms/token | TRL GRPO ms/token | PPO/TRL | {mem_label} |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        r["rollout_ratio"] = r["rollout_s"] / r["rollout_floor_s"]
        r["update_ratio"] = r["update_s"] / args.ppo_epochs / r["update_floor_s"]
        r["reward_share"] = 100 * r["reward_s"] / r["step_s"]
        ppo_ms = 1000 * r["step_s"] / max(r["tokens"], 1)
        trl = (f"{1000 * r['trl_s'] / max(r['trl_tokens'], 1):.1f} | {ppo_ms / (1000 * r['trl_s'] / max(r['trl_tokens'], 1)):.2f}"
               if "trl_s" in r else "- | -")
        peak = max(r["rollout_mib"], r["reward_mib"], r["update_mib"])
        print(f"| {r['bs']} | {r['prompt_tokens']:.0f} | {r['tokens']:.0f} | {r['rollout_s']:.2f} "
              f"| {r['rollout_floor_s']:.2f} | {r['rollout_ratio']:.2f}x | {r['update_s']:.2f} | {r['update_floor_s']:.2f} "
              f"| {r['update_ratio']:.2f}x | {1000 * r['reward_s']:.1f} | {r['reward_share']:.2f} | {r['step_s']:.2f} "
              f"| {ppo_ms:.1f} | {trl} | {peak:.0f} |")
    for r in rows:
        ro = {k: r.get(f"part {k}", 0.0) for k in ("encode", "generate", "policy scoring", "reference", "decode")}
        ro["other"] = r["rollout_s"] - sum(ro.values())
        up = {k: r.get(f"part {k}", 0.0) for k in ("update forward", "optimizer step")}
        up["loss, backward, clipping, GAE"] = r["update_s"] - sum(up.values())
        print(f"batch {r['bs']}: rollout {r['rollout_s']:.2f} s = " + ", ".join(f"{k} {v:.2f}" for k, v in ro.items())
              + f" (its generate {ro['generate'] / r['rollout_floor_s']:.2f}x the floor)"
              + f"; update {r['update_s']:.2f} s = " + ", ".join(f"{k} {v:.2f}" for k, v in up.items())
              + f"; {r.get('malformed', 0):.0f} of {r['bs']} completions malformed (not judged); the reward on "
              f"well-formed trajectories of the same texts ({r['reward_wf_judged']:.0f} judged): "
              f"{1000 * r['reward_wf_s']:.1f} ms, {100 * r['reward_wf_s'] / r['step_s']:.2f}% of the step"
              + (f"; TRL step {r['trl_s']:.2f} s for {r['trl_tokens']:.0f} generated tokens after "
                 f"{r['trl_prompt_tokens']:.0f} prompt tokens" if "trl_s" in r else ""))
    misses = [f"rollout/floor {r['rollout_ratio']:.2f}x at batch {r['bs']}" for r in rows if r["rollout_ratio"] > 1.15]
    misses += [f"update/floor {r['update_ratio']:.2f}x at batch {r['bs']}" for r in rows if r["update_ratio"] > 1.3]
    misses += [f"reward {r['reward_share']:.1f}% at batch {r['bs']}" for r in rows if r["reward_share"] >= 5]
    misses += [f"well-formed reward {100 * r['reward_wf_s'] / r['step_s']:.1f}% at batch {r['bs']}"
               for r in rows if r["reward_wf_s"] / r["step_s"] >= 0.05]
    print("targets: rollout <= 1.15x floor, update <= 1.3x floor per epoch, reward < 5% of the step: "
          + ("met" if not misses else "missed: " + "; ".join(misses)))


if __name__ == "__main__":
    main()
