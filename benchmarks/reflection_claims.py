"""The paper's two training claims, tested with confidence on a controlled reflection task: many seeds, intervals, verdicts.

R2-Write claims that PPO with its process reward, against outcome-only PPO,

* (C1, quality) reaches an equal or higher outcome, and
* (C2, efficiency) writes fewer redundant reflections and shorter responses, while the
  useful reflections (those that raise the score) are kept.

``benchmarks/learning_signal.py`` runs the real 135M policy and cannot rank the rewards: its
held-out score is dominated by format breaks. Here the *mechanism* is measured instead. The
task, rubric and rule judge are the keyword task (:mod:`r2_write.benchmark_tasks.keywords`); the policy
is a from-scratch 2-layer Llama over a word-level tokenizer (``benchmarks/claims_task.py``),
SFT-warm-started on trajectories that mix, on purpose, drafts missing a required word and
complete drafts, each with or without a reflection->revision step. Everything after the model
is the project's own: the trajectory parser, :func:`r2_write.rewards.process.process_reward_fn`
(called, never copied), :func:`r2_write.rl.trainer.train` (token-level rewards, GAE, PPO) and
TRL's GRPO through :func:`r2_write.training.grpo.train_grpo` with
:func:`r2_write.rewards.process.outcome_reward_fn`.

One run: one SFT warm start (``--sft-seed``; built once and reused), then for every seed the
three variants from it with that seed (prompt order, sampling, value head): ``ppo``
(process_weight = lambda), ``ppo_outcome`` (process_weight 0, otherwise identical) and
``grpo``; the SFT start and every variant are evaluated on held-out prompts every
``--eval-every`` steps. Each seed's numbers go to ``<out>/seeds/seed-<n>.json`` as soon as it
finishes, and the table and figure are rebuilt from the seeds that exist (``--report-only``
rebuilds them without training).

Measurements (held-out prompts, ``--eval-samples`` samples each at temperature 1, a fixed
seed per run seed; from the project's parser and the rule judge alone, not from the reward
under test, see :func:`claims_task.measure_completion`): outcome (1-10 score of the final
answer, malformed = 1), malformed share, response tokens, reflections per response, redundant
share (steps whose revision does not beat the best earlier version / steps), redundant steps
per response, useful-reflection rate (incomplete drafts whose first step raises the score /
incomplete drafts).

PREDICTIONS (written before the first full run; the git history of this file is the proof).
All are paired differences ``ppo - ppo_outcome`` over seeds at the last evaluation step
(``--steps``, default 20 steps of 32 rollouts, lambda = ``--process-weight`` 1.0, the largest
the project allows, so the mechanism is seen at its full weight), mean and 95% t interval:

* P1 (C2, redundancy): redundant steps per response: ppo < ppo_outcome.
* P2 (C2, useful reflections kept): useful-reflection rate: ppo >= ppo_outcome
  (non-inferiority margin 0.05).
* P3 (C2, length): response tokens: ppo < ppo_outcome.
* P4 (C1, quality): held-out outcome: ppo >= ppo_outcome (non-inferiority margin 0.10 on the
  1-10 scale).

Verdicts: a ``<`` prediction *holds* when the interval's upper end is below 0, *does not hold*
when its lower end is above 0, and is *not resolved* otherwise. A ``>=`` prediction *holds*
when the lower end is above minus its margin, *does not hold* when the upper end is below 0,
and is *not resolved* otherwise. Why we expect them: the process reward puts
``-lambda x (redundancy_penalty + step_cost)`` on the token that closes a redundant revision
and ``lambda x gain / 9`` on an improving one, while outcome-only PPO sees a redundant step only
through the KL term, so nothing pushes its redundancy down; both see the outcome gain of a
useful step. C1 is expected to be a tie at this scale (both variants can reach the same answers).

    .venv/bin/python benchmarks/reflection_claims.py                    # 20 seeds (~20 min on 2 idle cores)
    .venv/bin/python benchmarks/reflection_claims.py --seeds 2          # development
    .venv/bin/python benchmarks/reflection_claims.py --report-only      # table and figure from the seeds on disk
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pydantic import BaseModel, ConfigDict, Field, model_validator  # noqa: E402

import claims_task as ct  # noqa: E402

logger = logging.getLogger("reflection_claims")
VARIANTS = ("ppo", "ppo_outcome", "grpo")
ROWS = ("sft", *VARIANTS)  # table rows: the SFT start, then each variant
METRICS = {  # key: (table header, digits)
    "outcome": ("held-out outcome (1-10)", 2),
    "malformed": ("malformed share", 3),
    "tokens": ("response tokens", 1),
    "reflections": ("reflections / response", 3),
    "redundant_share": ("redundant share of steps", 3),
    "redundant_per_response": ("redundant steps / response", 3),
    "useful_rate": ("useful-reflection rate", 3),
}
# name -> (claim, metric, relation, non-inferiority margin): the docstring's predictions
PREDICTIONS = {
    "P1": ("C2 redundancy", "redundant_per_response", "<", 0.0),
    "P2": ("C2 useful reflections kept", "useful_rate", ">=", 0.05),
    "P3": ("C2 length", "tokens", "<", 0.0),
    "P4": ("C1 quality", "outcome", ">=", 0.10),
}


class Settings(BaseModel):
    """Everything a run depends on; a seed's file is reused only when these (but ``seeds``) are equal."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    seeds: int = Field(20, ge=1, description="Seeds 0..seeds-1 (each: the three variants from the one SFT start).")
    sft_seed: int = Field(0, description="Seed of the prompt split, the warm-start data and the SFT model.")
    sft_examples: int = Field(800, ge=8, description="Warm-start trajectories.")
    sft_epochs: int = Field(20, ge=1, description="SFT epochs.")
    sft_lr: float = Field(5e-3, gt=0, description="SFT learning rate.")
    sft_batch: int = Field(64, ge=1, description="SFT batch size.")
    hidden: int = Field(128, ge=8, description="Model hidden size (2 layers, 4 heads).")
    complete_share: float = Field(0.5, ge=0, le=1, description="Warm-start drafts that already have every word.")
    reflect_share: float = Field(0.5, ge=0, le=1, description="Warm-start trajectories with a reflection step.")
    train_prompts: int = Field(256, ge=1, description="RL training prompts (the same pool for every seed).")
    eval_prompts: int = Field(64, ge=1, description="Held-out prompts.")
    eval_samples: int = Field(2, ge=1, description="Samples per held-out prompt (temperature 1).")
    steps: int = Field(20, ge=1, description="RL steps per variant (one optimizer step each).")
    eval_every: int = Field(10, ge=1, description="Held-out evaluation every N steps (and at step 0 and the end).")
    batch: int = Field(32, ge=2, description="Rollouts per step (PPO: prompts x 1; GRPO: prompts x generations).")
    grpo_generations: int = Field(4, ge=2, description="GRPO group size.")
    lr: float = Field(2e-4, gt=0, description="Policy learning rate (PPO and GRPO).")
    critic_lr: float = Field(1e-3, gt=0, description="PPO value-head learning rate.")
    kl_coef: float = Field(0.001, ge=0, description="KL to the SFT model (PPO kl_coef, GRPO beta).")
    lam: float = Field(1.0, ge=0, le=1, description="GAE lambda (Writing-RL's recipe: 1.0).")
    process_weight: float = Field(1.0, ge=0, le=1, description="Lambda of the process reward in the ppo variant.")
    process_sign: float = Field(1.0, description="Regression check only: -1 flips the process reward's sign.")
    max_new_tokens: int = Field(160, ge=8, description="Rollout and evaluation length limit (tokens).")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.batch % self.grpo_generations:
            raise ValueError(f"batch ({self.batch}) must be a multiple of grpo_generations ({self.grpo_generations})")
        if self.process_sign not in (1.0, -1.0):
            raise ValueError(f"process_sign must be 1 or -1, got {self.process_sign}")
        return self

    def key(self, *exclude: str) -> str:
        """A short digest of the settings without ``exclude`` (what a cached file must match)."""
        data = json.dumps(self.model_dump(exclude=set(exclude)), sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:12]

    @property
    def eval_steps(self) -> list[int]:
        return sorted({0, *range(self.eval_every, self.steps, self.eval_every), self.steps})


SFT_FIELDS = ("sft_seed", "sft_examples", "sft_epochs", "sft_lr", "sft_batch", "hidden", "complete_share",
              "reflect_share")


def parse_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, field in Settings.model_fields.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=None, help=field.description)
    p.add_argument("--out", default="data/08_reporting/reflection_claims", help="Seeds, table, figure and work dir.")
    p.add_argument("--figure", default="docs/figures/claims.png", help="Where the figure goes.")
    p.add_argument("--report-only", action="store_true", help="Rebuild the table and figure from the seeds on disk.")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    args = p.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    try:
        settings = Settings(**given)
    except ValueError as err:
        p.error(str(err).splitlines()[-1] if "\n" not in str(err) else " ".join(str(err).split("\n")[1:3]))
    return settings, args


# ----------------------------------------------------------------------------- data and warm start


def split(settings: Settings) -> dict[str, list[dict]]:
    """Disjoint SFT / RL-training / held-out task rows from ``sft_seed``."""
    n_sft, n_train = settings.sft_examples, settings.train_prompts
    specs = ct.make_specs(n_sft + n_train + settings.eval_prompts, settings.sft_seed)
    return {"sft": ct.task_rows(specs[:n_sft]), "train": ct.task_rows(specs[n_sft : n_sft + n_train]),
            "eval": ct.task_rows(specs[n_sft + n_train :])}


def warm_start(settings: Settings, rows: list[dict], work: Path) -> str:
    """The SFT model directory, trained once per SFT settings (``work/sft-<key>``) and reused."""
    out = work / f"sft-{settings.key(*(set(Settings.model_fields) - set(SFT_FIELDS)))}"
    if (out / "config.json").exists():
        return str(out)
    tokenizer = ct.build_tokenizer()
    model = ct.build_model(tokenizer, settings.sft_seed, hidden=settings.hidden)
    examples = ct.sft_examples([r["spec"] for r in rows], settings.sft_seed, settings.complete_share,
                               settings.reflect_share)
    t = time.perf_counter()
    losses = ct.sft(model, tokenizer, examples, settings.sft_seed, epochs=settings.sft_epochs, batch=settings.sft_batch,
                    lr=settings.sft_lr)
    logger.warning("SFT: loss %.3f -> %.3f in %.0f s", losses[0], losses[-1], time.perf_counter() - t)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ct.save(model, tokenizer, tmp)
    (tmp / "sft_losses.json").write_text(json.dumps(losses))
    tmp.rename(out)
    return str(out)


# ----------------------------------------------------------------------------- RL variants


def signed_process_reward(settings: Settings):
    """The project's process reward (``--process-sign -1``: every process reward negated, a regression check)."""
    from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn
    from r2_write.benchmark_tasks.keywords import keyword_judge

    reward = process_reward_fn(keyword_judge, ProcessRewardConfig())
    if settings.process_sign == 1.0:
        return reward

    def flipped(*args, **kwargs):
        out = reward(*args, **kwargs)
        for res in out:
            res["rewards"] = [(end, -r) for end, r in res["rewards"]]
            res["process"] = -res["process"]
        return out

    return flipped


TRAIN_KEYS = ("reward/mean", "reward/outcome_score", "reward/process", "reward/format_violations",
              "reward/steps_improved_frac", "reward/redundant_frac", "response/length_tokens", "response/reflections",
              "response/steps", "objective/kl", "losses/explained_variance", "losses/value_loss",  # PPO
              "reward", "reward_std", "completions/mean_length", "kl")  # GRPO (TRL's names)


def _train_log(history: list[dict]) -> list[dict]:
    """The per-step training metrics kept in a seed's file (for looking for causes)."""
    return [{k: h[k] for k in TRAIN_KEYS if isinstance(h.get(k), (int, float))} for h in history]


def train_ppo(settings: Settings, sft_dir: str, rows: list[dict], seed: int, variant: str,
              work: Path) -> tuple[dict[int, str], list[dict]]:
    """Train one PPO variant; return ``{step: checkpoint dir}`` at every evaluation step, and the per-step metrics."""
    from r2_write.rl.ppo_config import PPOConfig
    from r2_write.rl.trainer import train

    out_dir = work / variant
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = PPOConfig(learning_rate=settings.lr, critic_learning_rate=settings.critic_lr, batch_size=settings.batch,
                    mini_batch_size=settings.batch, total_steps=settings.steps, max_new_tokens=settings.max_new_tokens,
                    max_prompt_length=128, save_every=settings.eval_every, keep_checkpoints=0, cleanup_checkpoints=False,
                    seed=seed, lam=settings.lam, kl_coef=settings.kl_coef, output_dir=str(out_dir),
                    process_weight=settings.process_weight if variant == "ppo" else 0.0, reuse_trained=False)
    rows_prompts, rubrics = [r["prompt"] for r in rows], [r["criteria"] for r in rows]
    result = train(sft_dir, rows_prompts, signed_process_reward(settings), cfg, rubrics=rubrics, resume=False)
    checkpoints = {int(p.name.split("-")[1]): str(p) for p in out_dir.glob("checkpoint-*")}
    checkpoints[settings.steps] = result["final_dir"]
    return checkpoints, _train_log(result["history"])


def train_grpo(settings: Settings, sft_dir: str, rows: list[dict], seed: int,
               work: Path) -> tuple[dict[int, str], list[dict]]:
    """Train the GRPO variant (TRL) with the outcome reward; return ``{step: checkpoint dir}`` and the per-step log."""
    from r2_write.rewards.process import ProcessRewardConfig, outcome_reward_fn
    from r2_write.benchmark_tasks.keywords import keyword_judge
    from r2_write.training.grpo import GRPOParams, train_grpo as project_train_grpo

    out_dir = work / "grpo"
    shutil.rmtree(out_dir, ignore_errors=True)
    n_evals = len(settings.eval_steps)
    cfg = GRPOParams(learning_rate=settings.lr, max_steps=settings.steps, per_device_train_batch_size=settings.batch,
                     num_generations=settings.grpo_generations, max_completion_length=settings.max_new_tokens,
                     temperature=1.0, beta=settings.kl_coef, seed=seed, save_steps=settings.eval_every,
                     save_total_limit=n_evals, cleanup_checkpoints=False, output_dir=str(out_dir), reuse_trained=False)
    reward = outcome_reward_fn(keyword_judge, ProcessRewardConfig())
    final, history = project_train_grpo(sft_dir, [r["prompt"] for r in rows], [r["criteria"] for r in rows], reward, cfg)
    checkpoints = {int(p.name.split("-")[1]): str(p) for p in (out_dir / "trainer").glob("checkpoint-*")}
    checkpoints[settings.steps] = final
    return checkpoints, _train_log(history)


def run_seed(settings: Settings, seed: int, sft_dir: str, data: dict, work: Path,
             variants: tuple[str, ...] = VARIANTS) -> dict:
    """SFT-start evaluation and the variants (default all three) of one seed, evaluated at every evaluation step."""
    evaluate = lambda model_dir: ct.evaluate(  # noqa: E731
        model_dir, data["eval"], settings.eval_samples, 10_000 + seed, settings.max_new_tokens)
    result = {"seed": seed, "key": settings.key("seeds"), "settings": settings.model_dump(), "evals": {}, "seconds": {},
              "train": {}}
    t = time.perf_counter()
    start = evaluate(sft_dir)
    result["evals"]["sft"] = {str(step): start for step in settings.eval_steps}  # the start, drawn at every step
    for variant in variants:
        t = time.perf_counter()
        seed_work = work / f"seed-{seed}"
        if variant == "grpo":
            checkpoints, result["train"][variant] = train_grpo(settings, sft_dir, data["train"], seed, seed_work)
        else:
            checkpoints, result["train"][variant] = train_ppo(settings, sft_dir, data["train"], seed, variant,
                                                              seed_work)
        result["seconds"][f"train {variant}"] = time.perf_counter() - t
        t = time.perf_counter()
        evals = {"0": start}
        for step in settings.eval_steps[1:]:
            evals[str(step)] = evaluate(checkpoints[step])
        result["evals"][variant] = evals
        result["seconds"][f"eval {variant}"] = time.perf_counter() - t
        shutil.rmtree(seed_work / ("grpo" if variant == "grpo" else variant), ignore_errors=True)
        logger.warning("seed %d %s: outcome %.2f -> %.2f, redundant/response %.3f -> %.3f, tokens %.1f -> %.1f (%.0f s)",
                       seed, variant, start["outcome"], evals[str(settings.steps)]["outcome"],
                       start["redundant_per_response"], evals[str(settings.steps)]["redundant_per_response"],
                       start["tokens"], evals[str(settings.steps)]["tokens"], result["seconds"][f"train {variant}"])
    shutil.rmtree(work / f"seed-{seed}", ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- statistics


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile (``df`` degrees of freedom) for a ``level`` interval."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def mean_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of the finite values: a t interval over seeds (nan bounds below 2 values).

    >>> [round(x, 3) for x in mean_interval([1.0, 2.0, 3.0])[:3]]
    [2.0, -0.484, 4.484]
    """
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(xs) / n
    if n < 2:
        return mean, math.nan, math.nan, n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def verdict(relation: str, low: float, high: float, margin: float = 0.0) -> str:
    """The docstring's verdict rule for a paired difference's interval ``[low, high]``.

    >>> verdict("<", -0.3, -0.1), verdict("<", -0.1, 0.2), verdict("<", 0.1, 0.3)
    ('holds', 'not resolved', 'does not hold')
    >>> verdict(">=", -0.04, 0.2, 0.05), verdict(">=", -0.3, -0.01, 0.05), verdict(">=", -0.2, 0.1, 0.05)
    ('holds', 'does not hold', 'not resolved')
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not resolved"
    if relation == "<":
        return "holds" if high < 0 else "does not hold" if low > 0 else "not resolved"
    if relation == ">=":
        return "holds" if low > -margin else "does not hold" if high < 0 else "not resolved"
    raise ValueError(f"unknown relation {relation!r}")


def summarize(seed_results: list[dict]) -> dict:
    """Per row (SFT start, variants), step and metric: mean and 95% interval; per prediction: the paired difference.

    Returns:
        ``{"seeds": [...], "steps": [...], "cells": {row: {step: {metric: (mean, low, high, n)}}},
        "predictions": {name: {claim, metric, relation, margin, diffs, mean, low, high, n, verdict}}}``.
    """
    seeds = sorted(r["seed"] for r in seed_results)
    steps = sorted({int(s) for r in seed_results for s in r["evals"]["ppo"]})
    cells: dict = {}
    for row in ROWS:
        cells[row] = {}
        for step in steps:
            cells[row][step] = {m: mean_interval([r["evals"][row][str(step)][m] for r in seed_results
                                                   if str(step) in r["evals"].get(row, {})]) for m in METRICS}
    last = str(steps[-1]) if steps else "0"
    predictions = {}
    for name, (claim, metric, relation, margin) in PREDICTIONS.items():
        diffs = [r["evals"]["ppo"][last][metric] - r["evals"]["ppo_outcome"][last][metric] for r in seed_results]
        diffs = [d for d in diffs if math.isfinite(d)]
        mean, low, high, n = mean_interval(diffs)
        predictions[name] = {"claim": claim, "metric": metric, "relation": relation, "margin": margin, "diffs": diffs,
                             "mean": mean, "low": low, "high": high, "n": n,
                             "verdict": verdict(relation, low, high, margin)}
    return {"seeds": seeds, "steps": steps, "cells": cells, "predictions": predictions}


def _cell(stat: tuple, digits: int) -> str:
    mean, low, high, n = stat
    if n == 0 or not math.isfinite(mean):
        return "-"
    if not math.isfinite(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown_table(summary: dict) -> str:
    """The metrics table (one row per variant and evaluation step) and the predictions table."""
    head = "| variant | step | " + " | ".join(h for h, _ in METRICS.values()) + " |"
    lines = [head, "|" + "---|" * (2 + len(METRICS))]
    for row in ROWS:
        steps = summary["steps"][:1] if row == "sft" else summary["steps"][1:]
        for step in steps:
            stat = summary["cells"][row][step]
            name = "sft (start)" if row == "sft" else row
            lines.append(f"| {name} | {step} | " + " | ".join(_cell(stat[m], d) for m, (_, d) in METRICS.items()) + " |")
    lines += ["", "| prediction | claim | ppo - ppo_outcome at the last step | predicted | mean [95% interval] | seeds "
              "| verdict |", "|---|---|---|---|---|---|---|"]
    for name, p in summary["predictions"].items():
        digits = METRICS[p["metric"]][1]
        predicted = "< 0" if p["relation"] == "<" else f">= -{p['margin']:g} (non-inferior)"
        lines.append(f"| {name} | {p['claim']} | {METRICS[p['metric']][0]} | {predicted} | "
                     f"{_cell((p['mean'], p['low'], p['high'], p['n']), digits)} | {p['n']} | {p['verdict']} |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    """One panel per metric: mean and 95% band over seeds against the RL step, per variant (SFT start at step 0)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 6.5))
    axes = fig.subplots(2, 4).ravel()
    steps = summary["steps"]
    for ax, (metric, (title, _)) in zip(axes, METRICS.items()):
        for row in VARIANTS:
            stats = [summary["cells"]["sft" if s == 0 else row][s][metric] for s in steps]
            means = [st[0] for st in stats]
            ax.plot(steps, means, marker="o", label=row)
            lows, highs = [st[1] for st in stats], [st[2] for st in stats]
            if all(math.isfinite(x) for x in lows + highs):
                ax.fill_between(steps, lows, highs, alpha=0.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("RL step", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8)
    ax = axes[-1]
    ax.axis("off")
    lines = [f"{n} {p['claim']}: {p['verdict']}" for n, p in summary["predictions"].items()]
    ax.text(0, 0.5, "\n".join(lines), fontsize=8, va="center")
    fig.suptitle(f"Reflection claims, mean and 95% t interval over {len(summary['seeds'])} seeds", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)


def incentives(settings: Settings) -> dict[str, dict[str, float]]:
    """What each PPO variant's reward pays for reflecting, from the project's reward (its public functions).

    For a sample task, the total reward (the sum of :func:`r2_write.rewards.process.token_rewards`
    over the response, KL aside) of a warm-start trajectory that reflects minus the same draft
    without the step, after an incomplete draft (a useful step) and after a complete one (a
    redundant step), at ``process_weight`` (``ppo``) and 0 (``ppo_outcome``).

    Returns:
        ``{variant: {"useful": reward difference, "redundant": reward difference}}``.
    """
    import random

    from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn, token_rewards
    from r2_write.benchmark_tasks.keywords import KeywordSpec, keyword_judge

    cfg, spec = ProcessRewardConfig(), KeywordSpec("en", ct.WORDS[:3], 25, ct.TOPICS[0])
    reward = process_reward_fn(keyword_judge, cfg)

    def total(complete: bool, reflect: bool, weight: float) -> float:
        ex = ct.sft_example(spec, complete, reflect, random.Random(0))
        res = reward([ex["prompt"]], [ex["completion"]], rubrics=[ex["criteria"]])[0]
        offsets = [(i, i + 1) for i in range(len(ex["completion"]))]
        return sum(token_rewards(offsets, res, cfg, weight))

    out = {}
    for variant, weight in (("ppo", settings.process_weight), ("ppo_outcome", 0.0)):
        out[variant] = {"useful": total(False, True, weight) - total(False, False, weight),
                        "redundant": total(True, True, weight) - total(True, False, weight)}
    return out


def incentives_table(settings: Settings) -> str:
    """:func:`incentives` as a markdown table."""
    lines = ["| variant | reward of a useful step (reflect - stop, incomplete draft) | reward of a redundant step "
             "(reflect - stop, complete draft) |", "|---|---|---|"]
    for variant, d in incentives(settings).items():
        lines.append(f"| {variant} | {d['useful']:+.4f} | {d['redundant']:+.4f} |")
    return "\n".join(lines)


def load_seeds(seed_dir: Path, key: str, seeds: int | None = None) -> list[dict]:
    """The seed files whose settings key is ``key`` (seeds below ``seeds`` when given)."""
    out = []
    for path in sorted(seed_dir.glob("seed-*.json")):
        res = json.loads(path.read_text())
        if res.get("key") == key and (seeds is None or res["seed"] < seeds):
            out.append(res)
    return out


def report(settings: Settings, args, seed_results: list[dict]) -> dict:
    """Write the table (``<out>/claims.md``), the summary JSON and the figure; return the summary."""
    out = Path(args.out)
    summary = summarize(seed_results)
    table = markdown_table(summary)
    header = (f"{len(summary['seeds'])} seeds ({summary['seeds'][:1]}..{summary['seeds'][-1:]}), settings key "
              f"{settings.key('seeds')}: {settings.model_dump(exclude={'seeds'})}")
    (out / "claims.md").write_text(header + "\n\n" + table + "\n\n" + incentives_table(settings) + "\n")
    ct.dump_json(summary, out / "claims_summary.json")
    plot(summary, Path(args.figure))
    return summary


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in ("transformers", "accelerate", "r2_write", "trl", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    settings, args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    seed_dir, work = out / "seeds", out / "work"
    seed_dir.mkdir(parents=True, exist_ok=True)
    key = settings.key("seeds")
    if not args.report_only:
        t_all = time.perf_counter()
        data = split(settings)
        sft_dir = warm_start(settings, data["sft"], work)
        for seed in range(settings.seeds):
            path = seed_dir / f"seed-{seed}.json"
            if path.exists() and json.loads(path.read_text()).get("key") == key:
                continue
            t = time.perf_counter()
            res = run_seed(settings, seed, sft_dir, data, work)
            res["seconds"]["seed"] = time.perf_counter() - t
            ct.dump_json(res, path)
            report(settings, args, load_seeds(seed_dir, key, settings.seeds))
            logger.warning("seed %d done in %.0f s (%.0f s so far)", seed, res["seconds"]["seed"],
                           time.perf_counter() - t_all)
    results = load_seeds(seed_dir, key, settings.seeds)
    if not results:
        raise SystemExit(f"no seed results with settings key {key} in {seed_dir}")
    summary = report(settings, args, results)
    print((out / "claims.md").read_text())
    print(f"wrote {out / 'claims.md'}, {out / 'claims_summary.json'} and {args.figure}")
    return summary


if __name__ == "__main__":
    main()
