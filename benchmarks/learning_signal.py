"""Does the RL stack learn? SFT warm start, then PPO (process reward), PPO (outcome only) and GRPO on a verifiable task.

The task is :mod:`r2_write.benchmark_tasks.keywords`: a short note on a topic that uses three given
words under a length limit (English: words; Chinese: characters), judged by code
(:func:`~r2_write.benchmark_tasks.keywords.keyword_judge`, the LLM judge's interface). One run:

1. builds disjoint SFT / RL-training / held-out prompt sets from one seed;
2. SFTs the base model on warm-start trajectories (:func:`make_sft_examples`) with the project's
   SFT (:func:`r2_write.training.sft.train_sft`);
3. from that one SFT checkpoint, with the same seed, training prompts, rollouts per step
   (``--batch``), one optimizer step per training step and the same step budget, trains
   ``ppo`` (:func:`r2_write.rl.ppo.train`, reward = outcome + lambda x process),
   ``ppo_outcome`` (the same with ``process_weight = 0``) and ``grpo``
   (:func:`r2_write.training.grpo.train_grpo` with :func:`outcome_reward_fn`);
4. evaluates the SFT start and every variant every ``--eval-every`` steps and at the end on the
   held-out prompts (greedy by default), judged with ``keyword_judge`` through the project's
   ``process_reward_fn``.

Prints one markdown table and the wall time per phase; writes ``learning_signal.png`` and
``learning_signal.json`` (raw per-step and per-evaluation numbers) to ``--out``.
Checkpoints go to ``--out``/work (under data/, git-ignored) and are deleted when evaluated.

    .venv/bin/python benchmarks/learning_signal.py            # ~30 minutes on 2 CPU cores
    .venv/bin/python benchmarks/learning_signal.py --tiny     # the slow test's budget
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

from r2_write.rewards.process import ProcessRewardConfig, outcome_reward_fn, process_reward_fn  # noqa: E402
from r2_write.benchmark_tasks.keywords import keyword_judge, make_prompts, make_sft_examples  # noqa: E402
from r2_write.trajectory import parse  # noqa: E402

VARIANTS = ("ppo", "ppo_outcome", "grpo")
logger = logging.getLogger("learning_signal")

# The 30-minute defaults (2 CPU cores) and the --tiny preset (tests/test_learning_signal.py).
DEFAULTS = dict(languages=["en"], sft_examples=64, sft_batch=4, sft_lr=2e-4, reflect_share=0.5, train_prompts=64, eval_prompts=16,
                steps=6, batch=8, grpo_generations=4, eval_every=3, max_new_tokens=288, lr=2e-5, critic_lr=1e-4,
                eval_temperature=1.0)
TINY = dict(languages=["en"], sft_examples=64, sft_batch=4, sft_lr=2e-4, reflect_share=0.5, train_prompts=16, eval_prompts=16,
            steps=3, batch=8, grpo_generations=4, eval_every=3, max_new_tokens=288, lr=5e-5, critic_lr=1e-4,
            eval_temperature=1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="The slow test's small budget (any flag below overrides it).")
    p.add_argument("--model", default="data/06_models/base_model", help="Base checkpoint to SFT.")
    p.add_argument("--sft-dir", default=None, help="Start from this SFT checkpoint instead of training one (development).")
    p.add_argument("--out", default="data/08_reporting/learning_signal", help="Table/PNG/JSON directory.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the prompts, SFT, RL sampling and evaluation.")
    p.add_argument("--languages", nargs="+", help="Task languages (en, zh).")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--sft-examples", type=int, help="Warm-start trajectories (one epoch).")
    p.add_argument("--sft-batch", type=int, help="SFT batch size.")
    p.add_argument("--sft-lr", type=float, help="SFT learning rate.")
    p.add_argument("--reflect-share", type=float,
                   help="Share of warm-start trajectories that reflect (the others answer with the flawed draft).")
    p.add_argument("--train-prompts", type=int, help="RL training prompts.")
    p.add_argument("--eval-prompts", type=int, help="Held-out prompts.")
    p.add_argument("--steps", type=int, help="RL steps (one optimizer step each) per variant.")
    p.add_argument("--batch", type=int, help="Rollouts per RL step (PPO: prompts x 1; GRPO: prompts x generations).")
    p.add_argument("--grpo-generations", type=int, help="GRPO group size.")
    p.add_argument("--eval-every", type=int, help="Evaluate on the held-out prompts every N steps (and at the end).")
    p.add_argument("--max-new-tokens", type=int, help="Rollout and evaluation length limit (tokens).")
    p.add_argument("--lr", type=float, help="Policy learning rate (PPO and GRPO).")
    p.add_argument("--critic-lr", type=float, help="PPO value-head learning rate.")
    p.add_argument("--critic", choices=("shared", "separate"), default="shared",
                   help="PPO critic: a value head on the policy, or a separate copy of the backbone (veRL).")
    p.add_argument("--process-weight", type=float, default=0.5, help="Lambda of the process reward (ppo).")
    p.add_argument("--kl-coef", type=float, default=0.001, help="KL to the SFT model (PPO kl_coef, GRPO beta).")
    p.add_argument("--eval-temperature", type=float,
                   help="Held-out sampling temperature (fixed seed, the same stream at every evaluation); 0 = greedy.")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
    p.add_argument("--keep-work", action="store_true", help="Keep the SFT and final RL checkpoints.")
    args = p.parse_args(argv)
    for key, value in (TINY if args.tiny else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.batch % args.grpo_generations:
        p.error(f"--batch ({args.batch}) must be a multiple of --grpo-generations ({args.grpo_generations})")
    return args


# ----------------------------------------------------------------------------- scoring


def redundant_count(step_scores: list[tuple[float, float]], min_gain: float = 0.0) -> int:
    """Steps whose revision does not beat the best version so far (used if the reward lacks ``n_redundant``)."""
    if not step_scores:
        return 0
    best, n = step_scores[0][0], 0
    for _, after in step_scores:
        if after > best + min_gain:
            best = after
        else:
            n += 1
    return n


def format_violation(text: str, truncated: bool) -> str | None:
    """Why a completion breaks the trajectory format (used if the reward lacks ``format_violation``)."""
    if truncated:
        return "truncated"
    try:
        traj = parse(text, strict=True)
    except Exception as err:  # TrajectoryParseError
        return str(err)
    if not traj.answer.strip():
        return "empty answer"
    return None


def score_completions(reward, tokenizer, prompts, completions, rubrics, truncated) -> dict:
    """Judge completions through the project's process reward; aggregate the table's numbers.

    Malformed completions (``outcome`` None / a format violation) count as outcome 1.
    """
    kwargs = {"truncated": list(truncated)} if _accepts(reward, "truncated") else {}
    results = reward(prompts, completions, rubrics=rubrics, **kwargs)
    rows = []
    for text, trunc, res in zip(completions, truncated, results):
        violation = res["format_violation"] if "format_violation" in res else format_violation(text, trunc)
        outcome = res["outcome"] if "format_violation" in res else (None if violation else res["outcome"])
        steps = res["n_steps"] if "n_steps" in res else len(res.get("step_scores", []))
        redundant = res["n_redundant"] if "n_redundant" in res else redundant_count(res.get("step_scores", []))
        rows.append({"outcome": 1.0 if outcome is None else float(outcome), "malformed": outcome is None,
                     "violation": violation, "tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"]),
                     "reflections": res["n_reflections"], "steps": steps, "redundant": redundant,
                     "process": res.get("process", 0.0)})
    n, n_steps = len(rows), sum(r["steps"] for r in rows)
    wellformed = [r["outcome"] for r in rows if not r["malformed"]]
    return {
        "outcome": sum(r["outcome"] for r in rows) / n,
        "outcome_wellformed": sum(wellformed) / len(wellformed) if wellformed else float("nan"),
        "format_violations": sum(r["malformed"] for r in rows) / n,
        "length_tokens": sum(r["tokens"] for r in rows) / n,
        "reflections": sum(r["reflections"] for r in rows) / n,
        "redundant_frac": sum(r["redundant"] for r in rows) / n_steps if n_steps else float("nan"),
        "n": n,
        "violations": sorted({r["violation"] for r in rows if r["violation"]}),
    }


def _accepts(fn, name: str) -> bool:
    """Whether ``fn`` takes the keyword ``name`` (named, or through ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class RecordingReward:
    """Wraps a reward callable; after each call, records the batch's numbers (one entry per RL step)."""

    def __init__(self, inner, judge_reward, tokenizer, max_new_tokens: int, eos_id: int, kind: str):
        self.inner, self.judge_reward, self.tokenizer = inner, judge_reward, tokenizer
        self.max_new_tokens, self.eos_id, self.kind = max_new_tokens, eos_id, kind
        self.records: list[dict] = []
        self.__name__ = f"{kind}_reward"
        self._t = time.perf_counter()

    def __call__(self, prompts, completions, rubrics=None, **kwargs):
        if "truncated" not in kwargs and "completion_ids" in kwargs:  # TRL passes ids: no EOS at the limit
            kwargs["truncated"] = [len(ids) >= self.max_new_tokens and (not ids or ids[-1] != self.eos_id)
                                   for ids in kwargs["completion_ids"]]
        truncated = kwargs.get("truncated") or [False] * len(completions)
        inner_kwargs = {"truncated": truncated} if _accepts(self.inner, "truncated") else {}
        out = self.inner(prompts, completions, rubrics=rubrics, **inner_kwargs)
        texts = [c if isinstance(c, str) else "".join(m.get("content", "") for m in c) for c in completions]
        users = [p if isinstance(p, str) else [m for m in p if m.get("role") == "user"][-1]["content"] for p in prompts]
        stats = score_completions(self.judge_reward, self.tokenizer, users, texts, rubrics, truncated)
        if self.kind == "grpo":
            stats["reward"] = sum(out) / len(out)
        now = time.perf_counter()
        stats["seconds"], self._t = now - self._t, now
        self.records.append(stats)
        return out


# ----------------------------------------------------------------------------- generation


class StopAfterBrokenAnswer:
    """Stopping criterion: a row is done once a marker tag follows its ``</think>``.

    Such a completion is malformed whatever comes next (``format_error``: marker tags in the
    answer), so generating on (greedy loops repeat ``</revision></think>...`` to the token limit)
    changes no score, only the wall time. The row is scored as it stands, not as truncated.
    """

    def __init__(self, tokenizer, prompt_width: int):
        self.tokenizer, self.prompt_width = tokenizer, prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        done = []
        for row in input_ids[:, self.prompt_width :].tolist():
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            close = text.find("</think>")
            done.append(close >= 0 and _MARKER_RE.search(text, close + len("</think>")) is not None)
        return torch.tensor(done, device=input_ids.device)


_MARKER_RE = re.compile(r"</?(?:think|plan|draft|reflection|revision)>")


@torch.no_grad()
def evaluate(model_dir: str, rows: list[dict], args, reward, batch_size: int = 16) -> dict:
    """Held-out generation (greedy, or sampled with a fixed seed) judged with keyword_judge.

    ``truncated`` = the row reached ``max_new_tokens`` without EOS (a format violation); rows
    stopped by :class:`StopAfterBrokenAnswer` are malformed by their text already.
    """
    from transformers import AutoTokenizer, StoppingCriteriaList

    from r2_write.rl.model import load_causal_lm
    from r2_write.rl.rollout import encode_prompts

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_causal_lm(model_dir).eval()
    eos = tokenizer.eos_token_id
    torch.manual_seed(args.seed)
    completions, truncated = [], []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        ids, mask = encode_prompts(tokenizer, [r["prompt"] for r in chunk], 512)
        sample = args.eval_temperature > 0
        stop = StoppingCriteriaList([StopAfterBrokenAnswer(tokenizer, ids.shape[1])])
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                             do_sample=sample, temperature=args.eval_temperature if sample else None,
                             top_k=0 if sample else None, top_p=1.0 if sample else None, stopping_criteria=stop,
                             pad_token_id=eos, eos_token_id=eos)
        for row in out[:, ids.shape[1]:].tolist():
            ended = eos in row
            text = tokenizer.decode(row[: row.index(eos)] if ended else row, skip_special_tokens=True)
            broken = _MARKER_RE.search(text, text.find("</think>") + 8) is not None if "</think>" in text else False
            truncated.append(not ended and not broken)
            completions.append(text)
    stats = score_completions(reward, tokenizer, [r["prompt"] for r in rows], completions,
                              [r["criteria"] for r in rows], truncated)
    stats["samples"] = completions[:4]
    return stats


# ----------------------------------------------------------------------------- phases


def run_sft(args, sft_rows, work: Path) -> str:
    from r2_write.training.sft import SFTParams, train_sft

    examples = make_sft_examples(sft_rows, seed=args.seed, reflect_share=args.reflect_share)
    cfg = SFTParams(learning_rate=args.sft_lr, num_train_epochs=1.0, per_device_train_batch_size=args.sft_batch,
                    max_length=512, seed=args.seed, output_dir=str(work / "sft"))
    final, history = train_sft(args.model, [e["prompt"] for e in examples], [e["completion"] for e in examples], cfg)
    logger.info("SFT loss %.3f -> %.3f over %d steps", history[0]["loss"], history[-1]["loss"], len(history))
    return final


def run_ppo(args, sft_dir, train_rows, eval_rows, work, variant, reward_cfg, tokenizer) -> tuple[list[dict], dict]:
    from r2_write.rl.ppo_config import PPOConfig
    from r2_write.rl.trainer import train

    weight = args.process_weight if variant == "ppo" else 0.0
    out_dir = work / variant
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = PPOConfig(learning_rate=args.lr, critic_learning_rate=args.critic_lr, batch_size=args.batch,
                    mini_batch_size=args.batch, micro_batch_size=min(args.batch, 4), ppo_epochs=1,
                    kl_coef=args.kl_coef, process_weight=weight, critic=args.critic, temperature=1.0, max_new_tokens=args.max_new_tokens,
                    max_prompt_length=256, total_steps=args.steps, seed=args.seed,
                    save_every=args.eval_every if args.eval_every < args.steps else 0,
                    keep_checkpoints=0, cleanup_checkpoints=False, output_dir=str(out_dir))
    judge_reward = process_reward_fn(keyword_judge, reward_cfg)
    recorder = RecordingReward(judge_reward, judge_reward, tokenizer, args.max_new_tokens, tokenizer.eos_token_id, variant)
    result = train(sft_dir, [r["prompt"] for r in train_rows], recorder, cfg, rubrics=[r["criteria"] for r in train_rows],
                   resume=False, reward_cfg=reward_cfg)
    per_step = []
    for i, (h, rec) in enumerate(zip(result["history"], recorder.records), start=1):
        per_step.append({"step": i, "reward": h["reward/mean"], **{k: v for k, v in rec.items() if k != "violations"},
                         "ppo": {k: v for k, v in h.items() if isinstance(v, (int, float))}})
    checkpoints = {int(p.name.split("-")[1]): str(p) for p in out_dir.glob("checkpoint-*")}
    checkpoints[args.steps] = result["final_dir"]
    return per_step, checkpoints


def run_grpo(args, sft_dir, train_rows, work, reward_cfg, tokenizer) -> tuple[list[dict], dict]:
    from r2_write.training.grpo import GRPOParams, train_grpo

    out_dir = work / "grpo"
    shutil.rmtree(out_dir, ignore_errors=True)
    judge_reward = process_reward_fn(keyword_judge, reward_cfg)
    recorder = RecordingReward(outcome_reward_fn(keyword_judge, reward_cfg), judge_reward, tokenizer,
                               args.max_new_tokens, tokenizer.eos_token_id, "grpo")
    n_evals = args.steps // args.eval_every + 1
    cfg = GRPOParams(learning_rate=args.lr, max_steps=args.steps, per_device_train_batch_size=args.batch,
                     gradient_accumulation_steps=1, num_generations=args.grpo_generations,
                     max_completion_length=args.max_new_tokens, temperature=1.0, beta=args.kl_coef, seed=args.seed,
                     save_steps=args.eval_every if args.eval_every < args.steps else 0, save_total_limit=n_evals, cleanup_checkpoints=False,
                     output_dir=str(out_dir))
    final, history = train_grpo(sft_dir, [r["prompt"] for r in train_rows], [r["criteria"] for r in train_rows],
                                recorder, cfg)
    per_step = [{"step": i, **{k: v for k, v in rec.items() if k != "violations"}}
                for i, rec in enumerate(recorder.records, start=1)]
    checkpoints = {int(p.name.split("-")[1]): str(p) for p in (out_dir / "trainer").glob("checkpoint-*")}
    checkpoints[args.steps] = final
    return per_step, checkpoints


# ----------------------------------------------------------------------------- report


def markdown_table(results: dict) -> str:
    """One row per (variant, held-out evaluation step)."""
    lines = [
        "| variant | step | held-out outcome (1-10, malformed = 1) | outcome of well-formed | malformed share "
        "| length (tokens) | reflections / response | redundant step share | train reward (steps since last eval) "
        "| train outcome (1-10, malformed = 1) | train malformed share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    start = results["sft_eval"]
    lines.append(_row("sft (start)", 0, start, None, None, None))
    for variant, res in results["variants"].items():
        prev = 0
        for ev in res["evals"]:
            window = [s for s in res["per_step"] if prev < s["step"] <= ev["step"]]
            reward = sum(s["reward"] for s in window) / len(window) if window else None
            outcome = sum(s["outcome"] for s in window) / len(window) if window else None
            malformed = sum(s["format_violations"] for s in window) / len(window) if window else None
            lines.append(_row(variant, ev["step"], ev, reward, outcome, malformed))
            prev = ev["step"]
    return "\n".join(lines)


def _fmt(x, digits=2) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.{digits}f}"


def _row(name, step, ev, reward, outcome, malformed) -> str:
    return (f"| {name} | {step} | {_fmt(ev['outcome'])} | {_fmt(ev['outcome_wellformed'])} | "
            f"{ev['format_violations'] * ev['n']:.0f}/{ev['n']} | {_fmt(ev['length_tokens'], 0)} | "
            f"{_fmt(ev['reflections'])} | {_fmt(ev['redundant_frac'])} | {_fmt(reward, 3)} | {_fmt(outcome)} | "
            f"{_fmt(malformed)} |")


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 7))
    axes = fig.subplots(2, 3).ravel()
    start = results["sft_eval"]
    panels = [("outcome", "held-out outcome (malformed = 1)", "evals"), ("length_tokens", "held-out length (tokens)", "evals"),
              ("redundant_frac", "held-out redundant step share", "evals"), ("reward", "train reward", "per_step"),
              ("outcome", "train outcome (1-10)", "per_step"), ("reflections", "train reflections / response", "per_step")]
    for ax, (key, title, source) in zip(axes, panels):
        for variant, res in results["variants"].items():
            pts = ([{"step": 0, **start}] if source == "evals" else []) + res[source]
            ax.plot([p["step"] for p in pts], [p[key] for p in pts], marker="o", label=variant)
        ax.set(title=title, xlabel="RL step")
    axes[0].legend()
    fig.suptitle(f"Learning signal on the keyword task (seed {results['args']['seed']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ----------------------------------------------------------------------------- main


def run(args) -> dict:
    from transformers import AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    work = out / "work"
    out.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}
    t_all = time.perf_counter()

    rows = make_prompts(args.sft_examples + args.train_prompts + args.eval_prompts, args.seed, tuple(args.languages))
    sft_rows = rows[: args.sft_examples]
    train_rows = rows[args.sft_examples : args.sft_examples + args.train_prompts]
    eval_rows = rows[args.sft_examples + args.train_prompts :]
    reward_cfg = ProcessRewardConfig()
    eval_reward = process_reward_fn(keyword_judge, reward_cfg)

    t = time.perf_counter()
    sft_dir = args.sft_dir or run_sft(args, sft_rows, work)
    phases["sft"] = time.perf_counter() - t
    print(f"[phase] sft: {phases['sft']:.0f} s", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(sft_dir)

    t = time.perf_counter()
    results = {"args": vars(args), "sft_eval": evaluate(sft_dir, eval_rows, args, eval_reward), "variants": {}}
    phases["eval sft"] = time.perf_counter() - t
    print(f"[phase] eval sft: {phases['eval sft']:.0f} s (outcome {results['sft_eval']['outcome']:.2f})", flush=True)

    for variant in args.variants:
        t = time.perf_counter()
        if variant == "grpo":
            per_step, checkpoints = run_grpo(args, sft_dir, train_rows, work, reward_cfg, tokenizer)
        else:
            per_step, checkpoints = run_ppo(args, sft_dir, train_rows, eval_rows, work, variant, reward_cfg, tokenizer)
        phases[f"train {variant}"] = time.perf_counter() - t
        t = time.perf_counter()
        evals = []
        for step in sorted(checkpoints):
            ev = evaluate(checkpoints[step], eval_rows, args, eval_reward)
            evals.append({"step": step, **ev})
            if not args.keep_work or step != args.steps:
                shutil.rmtree(checkpoints[step], ignore_errors=True)
        phases[f"eval {variant}"] = time.perf_counter() - t
        results["variants"][variant] = {"per_step": per_step, "evals": evals}
        print(f"[phase] train {variant}: {phases[f'train {variant}']:.0f} s, eval: {phases[f'eval {variant}']:.0f} s "
              f"(held-out outcome {results['sft_eval']['outcome']:.2f} -> {evals[-1]['outcome']:.2f})", flush=True)
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    phases["total"] = time.perf_counter() - t_all
    results["phases_s"] = phases

    table = markdown_table(results)
    print()
    print(f"Keyword task, languages {args.languages}, seed {args.seed}: SFT {args.sft_examples} examples; "
          f"{args.steps} RL steps x {args.batch} rollouts ({args.train_prompts} training prompts), one optimizer step per "
          f"RL step, lr {args.lr}; held-out {args.eval_prompts} prompts, "
          f"{'greedy' if args.eval_temperature <= 0 else f'temperature {args.eval_temperature}'}, "
          f"max_new_tokens {args.max_new_tokens}. Held-out outcome: mean keyword_judge score of the final answer over "
          f"all held-out prompts, malformed completions (format violation or truncated) scored 1; 'outcome of "
          f"well-formed' leaves them out. Train reward: the variant's own training reward per rollout (normalised "
          f"outcome in [0, 1] or -format_penalty; ppo adds lambda = {args.process_weight} x process reward). Redundant "
          f"step share: reflection->revision steps that did not beat the best version so far.")
    print()
    print(table)
    print()
    print("| phase | wall s |\n|---|---|")
    for name, secs in phases.items():
        print(f"| {name} | {secs:.0f} |")
    (out / "learning_signal.json").write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str))
    plot(results, out / "learning_signal.png")
    print(f"\nwrote {out / 'learning_signal.json'} and {out / 'learning_signal.png'}")
    return results


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
