"""The PPO training loop: steps of :mod:`r2_write.rl.ppo`, metrics, checkpoints and resume, on one process or many.

:func:`train` loads the policy (and the separate critic) from :mod:`r2_write.rl.model`, then
per step samples with :func:`r2_write.rl.rollout.rollout`, rewards with the reward function and
:func:`~r2_write.rl.ppo.token_scores`, and updates with :func:`~r2_write.rl.ppo.ppo_update` (and
:func:`~r2_write.rl.ppo.critic_update`). During the first ``critic_warmup_steps`` steps only the
critic learns (the actor is frozen). Checkpoints and the final model hold the critic in
``critic/``; the policy directory stays a plain Hugging Face causal LM.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from r2_write.progress import Progress
from r2_write.rewards.process import ProcessRewardConfig, normalise_score
from r2_write.rl.model import (
    CRITIC_DIR,
    OPTIMIZER_FILE,
    VALUE_HEAD_FILE,
    Actor,
    Critic,
    PolicyWithValue,
    load_causal_lm,
    load_critic,
    load_policy,
    save_critic,
    save_model,
)
from r2_write.rl.ppo import compute_gae, compute_rewards, critic_update, ppo_update, sum_over_processes, token_scores
from r2_write.judge.reward import COUNTS
from r2_write.rl.monitor import MonitorJudges, fixed_sampling_seed, monitor_metrics, score_answers, split_prompts
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import VLLMSampler, rollout
from r2_write.runs import STATE_FILE, latest_checkpoint, prune_checkpoints, remove_checkpoints

logger = logging.getLogger(__name__)


def train(
    policy_dir: str,
    prompts: list[str],
    reward_fn: Callable[..., list[dict]],
    cfg: PPOConfig,
    rubrics: list[Any] | None = None,
    log_fn: Callable[[dict[str, float], int], None] | None = None,
    resume: bool = True,
    reward_cfg: ProcessRewardConfig | None = None,
    weights_digest: bool = False,
    judge_audit: Any = None,
    monitor_judges: MonitorJudges | None = None,
) -> dict[str, Any]:
    """Train a policy with PPO on the R2-Write reward.

    Under ``accelerate launch`` (several processes; :mod:`r2_write.training.launch` starts them)
    each process samples and judges its share of every step's rollouts (``batch_size`` and
    ``mini_batch_size`` count all processes), data parallelism averages the gradients, and
    advantage whitening, loss weighting and the metrics use sums over the processes: the run
    computes what one process would on the global batch. The main process writes the checkpoints
    and the final model. Under FSDP2 (``conf/accelerate/fsdp.yaml``) the actor and critic are
    sharded by ``accelerator.prepare`` and the reference by :func:`_shard_frozen`; checkpoints
    hold full state dicts gathered by every process (:func:`_full_states`).

    Args:
        policy_dir: Directory of the starting policy (e.g. the SFT model); it is also the
            frozen KL reference.
        prompts: Training prompts; each step takes ``cfg.prompts_per_step`` of them from a
            seeded shuffle (epoch after epoch), each sampled ``rollouts_per_prompt`` times.
        reward_fn: ``reward_fn(prompts, completions, rubrics=..., truncated=...) -> list[dict]`` with
            ``outcome`` (None if malformed), ``rewards`` and step counts per completion, e.g.
            :func:`r2_write.rewards.process.process_reward_fn`.
        cfg: PPO hyperparameters.
        rubrics: One rubric per prompt (passed through to ``reward_fn``), or None.
        log_fn: Called as ``log_fn(metrics, step)`` after every step (main process only).
        resume: Continue from the latest ``output_dir/checkpoint-<step>`` if there is one.
        reward_cfg: Score-to-reward settings for token placement (lambda is ``cfg.process_weight``).
        weights_digest: Also return ``weights_digest``, a SHA-256 of this process's final policy
            (and critic) parameters: equal on every process of a data-parallel run.
        judge_audit: The reward's judge counters (:class:`r2_write.judge.reward.JudgeScoreFn`: ``counts()``,
            ``check_budget(counts)``), or None. After every step's reward the counts are summed over the
            processes, ``reward/unscored`` is logged and the judge's failure budget is checked on the run's
            totals so far: a run that crosses it stops in that step, before the update, with one line
            (:class:`~r2_write.llm.base.FailureBudgetError`, raised by every process alike).
        monitor_judges: The over-optimisation monitor's judges (:mod:`r2_write.rl.monitor`); needed when
            ``cfg.monitor.every > 0``: then ``cfg.monitor.prompts`` prompts are held out of training and,
            every ``cfg.monitor.every`` steps, answered by the policy and scored (``monitor/*`` metrics).

    Returns:
        ``{"history": [metrics per step, from step 1], "final_dir": "<output_dir>/final"}``;
        with ``critic: separate`` the critic is saved in ``final/critic/``.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if not prompts:
        raise ValueError("train() needs at least one prompt")
    if rubrics is not None and len(rubrics) != len(prompts):
        raise ValueError(f"{len(rubrics)} rubrics for {len(prompts)} prompts")
    if cfg.monitor.enabled and monitor_judges is None:
        raise ValueError("ppo.monitor.every > 0 needs the monitor's judges (train(..., monitor_judges=...))")
    prompts, rubrics, held_prompts, held_rubrics = split_prompts(prompts, rubrics, cfg.monitor, "ppo.monitor")
    reward_cfg = reward_cfg or ProcessRewardConfig()
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    if accelerator.distributed_type == "DEEPSPEED":
        raise ValueError("PPO does not run under DeepSpeed (its engine steps inside backward; PPO accumulates "
                         "micro-batches itself and steps two models): launch it with conf/accelerate/fsdp.yaml "
                         "(FSDP2) or plain data parallelism; zero3.yaml is for SFT and GRPO")
    fsdp = accelerator.distributed_type == "FSDP"
    if fsdp and getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1) != 2:
        raise ValueError("PPO shards with FSDP2 only (fsdp_version: 2, as in conf/accelerate/fsdp.yaml)")
    if cfg.batch_size % n_proc or cfg.mini_batch_size % n_proc:
        raise ValueError(f"batch_size and mini_batch_size must be multiples of the {n_proc} processes")
    if cfg.sampling_restrictions():
        logger.warning(
            "PPO rollouts sample with %s: the tokens are drawn from a truncated or penalised distribution but "
            "scored with the policy's full one, so the PPO ratios and the KL are off-policy; the defaults "
            "(top_k=0, top_p=1, min_p=None, repetition_penalty=1) sample the policy itself",
            ", ".join(cfg.sampling_restrictions()),
        )

    # --- models, optimizers, resume state
    output_dir = Path(cfg.output_dir)
    checkpoint = latest_checkpoint(output_dir) if resume else None
    set_seed(cfg.seed)  # the value head's initialisation
    # FSDP with fsdp_activation_checkpointing wraps each decoder layer in a checkpoint wrapper at prepare
    # (checked below); transformers' own checkpointing on top would recompute every layer twice
    fsdp_ac = fsdp and bool(getattr(accelerator.state.fsdp_plugin, "activation_checkpointing", False))
    load_cfg = cfg.model_copy(update={"gradient_checkpointing": False}) if fsdp_ac else cfg
    tokenizer, policy, optimizer = load_policy(checkpoint or Path(policy_dir), load_cfg)
    critic, critic_optimizer = None, None
    if cfg.critic == "separate":
        critic, critic_optimizer = load_critic(checkpoint or Path(policy_dir), load_cfg)
    ref_model = load_causal_lm(policy_dir).eval().requires_grad_(False)
    start_step, history = 0, []
    if checkpoint is not None:  # under FSDP the optimizer states load once the models are sharded (below)
        start_step, history = _restore_state(checkpoint, policy, optimizer, critic_optimizer, sharded=fsdp)
        logger.info("resuming PPO from %s (step %d)", checkpoint, start_step)
    policy, optimizer = accelerator.prepare(policy, optimizer)
    unwrapped, unwrapped_critic = accelerator.unwrap_model(policy), None
    if critic is not None:
        critic, critic_optimizer = accelerator.prepare(critic, critic_optimizer)
        unwrapped_critic = accelerator.unwrap_model(critic)
    if fsdp:  # the frozen reference is sharded like the policy (each decoder layer gathered only while it runs)
        _check_sharding(policy, critic, cfg.gradient_checkpointing and fsdp_ac)
        ref_model = _shard_frozen(ref_model, accelerator)
        _init_fsdp_roots(accelerator.device, policy, critic, ref_model)
        if checkpoint is not None:
            _load_full_optimizer_states(checkpoint, policy, optimizer, critic, critic_optimizer)
    else:
        ref_model.to(accelerator.device)
    sampler = VLLMSampler(unwrapped.lm, accelerator, tokenizer, cfg) if cfg.use_vllm else None

    # --- PPO steps (a bar on a terminal, a progress line in logs every R2_PROGRESS_LOG_S seconds)
    progress = Progress(cfg.total_steps - start_step, "PPO steps", logger,
                        bar=None if accelerator.is_main_process else False)
    judged_so_far = dict.fromkeys(COUNTS, 0.0)  # the reward judge's counts over the processes, this run
    last_counts = judge_audit.counts() if judge_audit is not None else None
    if held_prompts and len(held_prompts) < n_proc:
        raise ValueError(f"ppo.monitor.prompts={len(held_prompts)} is fewer than the {n_proc} processes")
    for step in range(start_step + 1, cfg.total_steps + 1):
        set_seed(cfg.seed + step, device_specific=True)
        rows = [i for i in step_prompt_indices(len(prompts), step, cfg) for _ in range(cfg.rollouts_per_prompt)]
        rows = rows[rank::n_proc]
        batch_prompts = [prompts[i] for i in rows]
        batch_rubrics = [rubrics[i] for i in rows] if rubrics is not None else None
        if critic is not None:  # critic warm-up (veRL critic_warmup): a frozen actor is not updated by ppo_update
            unwrapped.requires_grad_(step > cfg.critic_warmup_steps)

        t0 = time.perf_counter()
        with accelerator.autocast():  # old logprobs at the precision the update will use
            ro = rollout(unwrapped, ref_model, tokenizer, batch_prompts, cfg, sampler=sampler, critic=unwrapped_critic)
        t1 = time.perf_counter()
        results = reward_fn(batch_prompts, ro.completions, rubrics=batch_rubrics, truncated=ro.truncated.tolist())
        judged_now = None
        if judge_audit is not None:  # the failure budget, every step, on every process's counts
            counts = judge_audit.counts()
            judged_now = _summed({k: counts[k] - last_counts[k] for k in COUNTS}, sum_over_processes(accelerator),
                                 accelerator.device)
            last_counts = counts
            judged_so_far = {k: judged_so_far[k] + judged_now[k] for k in COUNTS}
            judge_audit.check_budget(judged_so_far)
        scores = token_scores(ro, results, reward_cfg, cfg.process_weight)
        t2 = time.perf_counter()
        rewards, kl = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
        advantages, returns = compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)
        update_stats = ppo_update(policy, optimizer, ro, advantages, returns, cfg, accelerator)
        if sampler is not None:
            sampler.sync_weights()  # the next rollout samples from the updated policy
        t3 = time.perf_counter()

        # global-batch metrics: sums over the processes (the update stats are global already)
        metrics = _step_metrics(ro, results, scores, rewards, kl, returns, reward_cfg, cfg,
                                all_reduce=sum_over_processes(accelerator))
        metrics.update(update_stats)
        if judged_now is not None:
            metrics["reward/unscored"] = judged_now["unscored"]
        timings = {"time/rollout": t1 - t0, "time/reward": t2 - t1, "time/update": t3 - t2}
        if critic is not None:  # the separate critic learns from the same batch (veRL's update_critic)
            metrics.update(critic_update(critic, critic_optimizer, ro, returns, cfg, accelerator))
            timings["time/critic_update"] = time.perf_counter() - t3
        metrics.update({k: _mean_over_processes(v, accelerator, accelerator.device) for k, v in timings.items()})
        if held_prompts and cfg.monitor.due(step):  # every process answers its share of the held-out prompts
            t4 = time.perf_counter()
            mine = list(range(rank, len(held_prompts), n_proc))
            with accelerator.autocast(), fixed_sampling_seed(accelerator.device):
                answers = rollout(unwrapped, ref_model, tokenizer, [held_prompts[i] for i in mine], cfg,
                                  sampler=sampler, critic=unwrapped_critic).completions
            sums = score_answers(monitor_judges, [held_prompts[i] for i in mine], answers,
                                 [held_rubrics[i] for i in mine])
            metrics.update(monitor_metrics(_summed(sums, sum_over_processes(accelerator), accelerator.device)))
            metrics["time/monitor"] = _mean_over_processes(time.perf_counter() - t4, accelerator, accelerator.device)
        history.append(metrics)
        if log_fn is not None and accelerator.is_main_process:
            log_fn(metrics, step)
        logger.info("PPO step %d/%d: reward/mean=%.4f objective/kl=%.4f", step, cfg.total_steps,
                    metrics["reward/mean"], metrics["objective/kl"])
        progress.update()
        if cfg.save_every and step % cfg.save_every == 0:
            accelerator.wait_for_everyone()
            states = _full_states(accelerator, policy, optimizer, critic, critic_optimizer)  # FSDP: a collective
            if accelerator.is_main_process:
                save_checkpoint(output_dir / f"checkpoint-{step}", unwrapped, tokenizer, optimizer, step, history,
                                critic=unwrapped_critic, critic_optimizer=critic_optimizer, states=states)
                prune_checkpoints(output_dir, cfg.keep_checkpoints)
            accelerator.wait_for_everyone()  # the other ranks wait for the write (launch.collective_timeout_s)

    progress.close()

    # --- final model
    final_dir = output_dir / "final"
    accelerator.wait_for_everyone()
    states = _full_states(accelerator, policy, None, critic, None)
    if accelerator.is_main_process:
        save_model(final_dir, unwrapped, tokenizer, state_dict=states and states["policy"])
        if unwrapped_critic is not None:
            save_critic(final_dir / CRITIC_DIR, unwrapped_critic, tokenizer, state_dict=states and states["critic"])
        if cfg.cleanup_checkpoints:
            remove_checkpoints(output_dir)
    out = {"history": history, "final_dir": str(final_dir)}
    if weights_digest and not fsdp:  # FSDP: each process holds other shards by design
        out["weights_digest"] = parameters_digest(unwrapped, unwrapped_critic)
    accelerator.wait_for_everyone()
    return out


def step_prompt_indices(n_prompts: int, step: int, cfg: PPOConfig) -> list[int]:
    """Indices of the prompts used at ``step`` (1-based): a stream of seeded shuffles, epoch after epoch.

    Depends only on ``(n_prompts, step, cfg.seed, cfg.prompts_per_step)``, so a resumed run
    sees the same prompts as an uninterrupted one.

    >>> cfg = PPOConfig(batch_size=2, mini_batch_size=2)
    >>> sorted(step_prompt_indices(4, 1, cfg) + step_prompt_indices(4, 2, cfg))
    [0, 1, 2, 3]
    """
    start = (step - 1) * cfg.prompts_per_step
    perms: dict[int, list[int]] = {}
    out = []
    for pos in range(start, start + cfg.prompts_per_step):
        epoch = pos // n_prompts
        if epoch not in perms:
            perms[epoch] = random.Random(cfg.seed + epoch).sample(range(n_prompts), n_prompts)
        out.append(perms[epoch][pos % n_prompts])
    return out


def parameters_digest(*models: nn.Module | None) -> str:
    """SHA-256 over the names and bytes of every parameter and buffer of ``models`` (None skipped)."""
    import hashlib

    digest = hashlib.sha256()
    for model in models:
        if model is None:
            continue
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _step_metrics(ro, results, scores, rewards, kl, returns, reward_cfg, cfg, all_reduce=None) -> dict[str, float]:
    """The per-step metrics of the global batch (every process's rows).

    Each metric is a ratio of sums (rows, judged completions, steps, response tokens) and the
    sums are added over the processes (``all_reduce``) before dividing, so the metrics equal
    those of one process holding the whole batch: a mean of per-process means would weigh a
    process's 1 judged completion like another's 3, and halve counts such as
    ``reward/format_violations``. Outcome metrics average the judged completions only (NaN when
    none was judged); ``reward/format_violations`` counts the others, which carry
    ``-format_penalty``. The variances of ``losses/explained_variance`` are two-pass (global mean first).
    """
    mask = ro.response_mask
    judged = [r for r in results if r["outcome"] is not None]
    total = _summed({
        "rows": len(results),
        "judged": len(judged),
        "steps": sum(r["n_steps"] for r in results),
        "reward": scores.sum(),
        "outcome": sum(normalise_score(r["outcome"], reward_cfg) for r in judged),
        "outcome_score": sum(r["outcome"] for r in judged),
        "process": sum(r["process"] for r in results),
        "improved": sum(r["n_improved"] for r in results),
        "redundant": sum(r["n_redundant"] for r in results),
        "worsened": sum(r["n_worsened"] for r in results),
        "reflections": sum(r["n_reflections"] for r in results),
        "tokens": mask.sum(),
        "truncated": ro.truncated.sum(),
        "kl": kl.sum(),
        "rlhf": rewards.sum(),
        "returns": (returns * mask).sum(),
        "residuals": ((returns - ro.values) * mask).sum(),
    }, all_reduce, mask.device)
    tokens = total["tokens"]
    mean_returns, mean_residuals = total["returns"] / max(tokens, 1.0), total["residuals"] / max(tokens, 1.0)
    m = mask.double()
    squares = _summed({
        "returns": ((returns.double() - mean_returns) ** 2 * m).sum(),
        "residuals": (((returns - ro.values).double() - mean_residuals) ** 2 * m).sum(),
    }, all_reduce, mask.device)
    var_returns = squares["returns"] / (tokens - 1) if tokens >= 2 else 0.0
    var_residuals = squares["residuals"] / (tokens - 1) if tokens >= 2 else 0.0
    rows, judged_n, steps = total["rows"], total["judged"], total["steps"]
    nan = float("nan")
    return {
        "reward/mean": total["reward"] / rows,
        "reward/outcome": total["outcome"] / judged_n if judged_n else nan,
        "reward/outcome_score": total["outcome_score"] / judged_n if judged_n else nan,
        "reward/process": total["process"] / rows,
        "reward/format_violations": rows - judged_n,
        "reward/steps_improved_frac": total["improved"] / steps if steps else nan,
        "reward/redundant_frac": total["redundant"] / steps if steps else nan,
        "reward/steps_worsened_frac": total["worsened"] / steps if steps else nan,
        "response/length_tokens": tokens / rows,
        "response/reflections": total["reflections"] / rows,
        "response/steps": steps / rows,
        "response/truncated_frac": total["truncated"] / rows,
        "objective/kl": total["kl"] / rows,
        "objective/non_score_reward": -cfg.kl_coef * total["kl"] / rows,
        "objective/rlhf_reward": total["rlhf"] / rows,
        "losses/explained_variance": 1 - var_residuals / var_returns if var_returns > 0 else 0.0,
    }


def _summed(values: dict[str, Any], all_reduce, device) -> dict[str, float]:
    """``values`` (numbers or 0-d tensors) as floats, summed over the processes when ``all_reduce`` is given (one call)."""
    vector = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=device)
    if all_reduce is not None:
        vector = all_reduce(vector)
    return dict(zip(values, vector.tolist()))


def _mean_over_processes(value: float, accelerator, device) -> float:
    if accelerator is None or accelerator.num_processes == 1:
        return float(value)
    return accelerator.reduce(torch.tensor(float(value), device=device), reduction="mean").item()


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: Path, policy: PolicyWithValue | Actor, tokenizer, optimizer, step: int, history: list[dict],
    critic: Critic | None = None, critic_optimizer=None, states: dict | None = None,
) -> None:
    """Write policy, tokenizer, value head, optimizer and step/history; atomic via a temporary directory.

    A separate critic goes to ``critic/`` with its optimizer state. ``states`` (FSDP, from
    :func:`_full_states`): the gathered state dicts to write instead of the sharded modules'.
    """
    tmp = path.with_name(path.name + ".tmp")
    save_model(tmp, policy, tokenizer, state_dict=states and states["policy"])
    torch.save(states["optimizer"] if states else optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    if critic is not None:
        save_critic(tmp / CRITIC_DIR, critic, tokenizer, state_dict=states and states["critic"])
        torch.save(states["critic_optimizer"] if states else critic_optimizer.state_dict(), tmp / CRITIC_DIR / OPTIMIZER_FILE)
    meta = {"step": step, "history": history, "optimizer_format": "full" if states else "local"}
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=1))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def _restore_state(
    checkpoint: Path, policy: PolicyWithValue | Actor, optimizer, critic_optimizer=None, sharded: bool = False
) -> tuple[int, list[dict]]:
    """Load the value head and optimizer states of a checkpoint; return its step and history.

    The separate critic's weights were loaded from the checkpoint by :func:`~r2_write.rl.model.load_critic`;
    ``critic_optimizer`` gets its state here. ``sharded`` (FSDP): the optimizer states are
    left to :func:`_load_full_optimizer_states` once the models are sharded; a checkpoint keeps
    its optimizer states in the layout of the run that wrote it (``optimizer_format``:
    ``local`` for one process or data parallelism, ``full`` for FSDP's gathered state dicts).
    """
    state = json.loads((checkpoint / STATE_FILE).read_text())
    written = state.get("optimizer_format", "local")
    if written != ("full" if sharded else "local"):
        raise ValueError(f"checkpoint {checkpoint} holds {written!r} optimizer states (written "
                         f"{'under FSDP' if written == 'full' else 'without FSDP'}): resume it with the same launch "
                         f"config_file, or start a fresh run")
    if isinstance(policy, PolicyWithValue):
        if not (checkpoint / VALUE_HEAD_FILE).exists():
            raise ValueError(f"checkpoint {checkpoint} has no {VALUE_HEAD_FILE}: it was written with critic: separate")
        policy.value_head.load_state_dict(torch.load(checkpoint / VALUE_HEAD_FILE, map_location="cpu"))
    if not sharded:
        optimizer.load_state_dict(torch.load(checkpoint / OPTIMIZER_FILE, map_location="cpu"))
        if critic_optimizer is not None:
            critic_optimizer.load_state_dict(torch.load(checkpoint / CRITIC_DIR / OPTIMIZER_FILE, map_location="cpu"))
    return state["step"], state["history"]


def _full_states(accelerator, policy, optimizer, critic=None, critic_optimizer=None) -> dict | None:
    """Under FSDP: the full state dicts of the sharded models and optimizers, gathered to CPU; None otherwise.

    A collective (every process calls it; the main process gets the tensors, the others empty
    dicts). Without FSDP every process holds whole modules and saving reads them directly.
    """
    if accelerator.distributed_type != "FSDP":
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    states = {"policy": get_model_state_dict(policy, options=full)}
    if optimizer is not None:
        states["optimizer"] = get_optimizer_state_dict(policy, optimizer, options=full)
    if critic is not None:
        states["critic"] = get_model_state_dict(critic, options=full)
        if critic_optimizer is not None:
            states["critic_optimizer"] = get_optimizer_state_dict(critic, critic_optimizer, options=full)
    return states


def _load_full_optimizer_states(checkpoint: Path, policy, optimizer, critic=None, critic_optimizer=None) -> None:
    """FSDP resume: every process reads the gathered optimizer states and keeps its shard of them."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    full = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(policy, optimizer, torch.load(checkpoint / OPTIMIZER_FILE, map_location="cpu"), options=full)
    if critic is not None:
        set_optimizer_state_dict(critic, critic_optimizer,
                                 torch.load(checkpoint / CRITIC_DIR / OPTIMIZER_FILE, map_location="cpu"), options=full)


def sharding_summary(model: nn.Module) -> dict[str, int]:
    """FSDP units and activation-checkpoint wrappers inside ``model`` (a prepared actor, critic or reference).

    ``fsdp_units`` counts the modules ``fully_shard`` made units (each decoder layer and the
    root); ``decoder_layer_units`` those among them whose class is in ``_no_split_modules``;
    ``checkpointed`` the checkpoint wrappers accelerate put around layers.
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
    from torch.distributed.fsdp import FSDPModule

    layers = set(getattr(model, "_no_split_modules", None) or [])
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    return {
        "fsdp_units": len(units),
        "decoder_layer_units": sum(any(c.__name__ in layers for c in type(getattr(m, "_checkpoint_wrapped_module", m)).__mro__)
                                   for m in units),
        "checkpointed": sum(isinstance(m, CheckpointWrapper) for m in model.modules()),
    }


@torch.no_grad()
def _init_fsdp_roots(device, policy: nn.Module, critic: nn.Module | None, ref_model: nn.Module) -> None:
    """One 1-token forward through each sharded model's root, so FSDP2 initialises it as the root of its layers.

    ``generate`` and the chunked scoring call the decoder layers past the root's forward; a layer
    that runs first would initialise itself as a root, and the root's own first forward would then fail.
    """
    ids = torch.zeros(1, 1, dtype=torch.long, device=device)
    att = torch.ones_like(ids)
    policy(ids, att, logits_to_keep=1)
    if critic is not None:
        critic(ids, att, logits_to_keep=1)
    ref_model(input_ids=ids, attention_mask=att, use_cache=False, logits_to_keep=1)
    for model in (policy, critic, ref_model):  # a root keeps its parameters gathered after forward: shard them again
        if model is not None and hasattr(model, "reshard"):  # (the optimizer and its states refer to the shards)
            model.reshard()


def _check_sharding(policy: nn.Module, critic: nn.Module | None, checkpointing: bool) -> None:
    """Log the prepared models' FSDP units; fail when asked-for activation checkpointing wrapped nothing."""
    for name, model in (("actor" if critic is not None else "policy", policy), ("critic", critic)):
        if model is None:
            continue
        summary = sharding_summary(model)
        logger.info("FSDP %s: %d units (%d decoder layers), %d activation-checkpointed layers", name,
                    summary["fsdp_units"], summary["decoder_layer_units"], summary["checkpointed"])
        if checkpointing and not summary["checkpointed"]:
            raise RuntimeError(f"gradient_checkpointing is on and FSDP's activation checkpointing was to do it, but "
                               f"the prepared {name} has no checkpointed layer (no _no_split_modules on the wrapper?)")


def _shard_frozen(model: nn.Module, accelerator) -> nn.Module:
    """FSDP2-shard a frozen model (the reference) as accelerate shards the trained ones: each decoder layer, then the root.

    ``accelerator.prepare`` wants an optimizer with every FSDP2 model, so the reference is
    sharded here with ``fully_shard`` and the plugin's mixed precision.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    plugin = accelerator.state.fsdp_plugin
    kwargs = {"reshard_after_forward": True, "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy()}
    layers = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in layers:
            fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)
    return model.eval()
