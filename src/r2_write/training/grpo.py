"""GRPO baseline: TRL's ``GRPOTrainer`` with the rubric judge as a sequence-level reward."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from pydantic import ConfigDict, Field
from transformers import TrainerCallback

from r2_write.llm.cache import model_identity
from r2_write.prompts.policy import policy_messages
from r2_write.rl.monitor import (
    MonitorJudges, MonitorParams, fixed_sampling_seed, monitor_metrics, score_answers, split_prompts,
)
from r2_write.runs import CheckpointParams, checkpoint_dir, hf_checkpoint_args, latest_checkpoint, remove_checkpoints, run_key

logger = logging.getLogger(__name__)


class GRPOParams(CheckpointParams):
    """``params:grpo``: the TRL GRPOConfig fields we expose."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-6, gt=0, description="Learning rate.")
    max_steps: int = Field(100, ge=1, description="Optimizer steps.")
    per_device_train_batch_size: int = Field(8, ge=1, description="Completions per device per step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    num_generations: int = Field(8, ge=2, description="Completions per prompt (the group).")
    max_completion_length: int = Field(1024, ge=8, description="Completion length limit in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    beta: float = Field(0.001, ge=0, description="KL coefficient to the reference model.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    bf16: bool = Field(False, description="bfloat16 mixed precision (GPU).")
    use_vllm: bool = Field(False, description="vLLM generation (GPU, TRL's vllm integration).")
    seed: int = Field(0, description="Training seed.")
    monitor: MonitorParams = Field(
        default_factory=MonitorParams,
        description="Over-optimisation monitor (r2_write.rl.monitor): every N steps the reward judge and eval_judge "
                    "score answers to held-out RL prompts; every: 0 = off.",
    )


def train_grpo(
    model_dir: str, prompts: list[str], rubrics: list[str], reward_fn: Callable, cfg: GRPOParams,
    judge_audit=None, monitor_judges: MonitorJudges | None = None,
) -> tuple[str, list[dict]]:
    """Train ``model_dir`` with GRPO; ``reward_fn(prompts, completions, rubrics=..., truncated=...) -> list[float]``.

    ``judge_audit`` (:class:`r2_write.judge.reward.JudgeScoreFn`, or None): after every reward call its
    counts are summed over the processes, logged as ``reward/unscored`` and checked against the judge's
    failure budget, so a run that crosses it stops in that step with one line. ``monitor_judges``
    (needed when ``cfg.monitor.every > 0``): ``cfg.monitor.prompts`` prompts are held out of training
    and every ``cfg.monitor.every`` steps answered by the policy and scored (``monitor/*``, :mod:`r2_write.rl.monitor`).

    Returns:
        (directory of the saved model, the trainer's per-step log history).
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from r2_write.llm.loading import load_tokenizer

    if not prompts:
        raise ValueError("the RL set is empty: difficulty filtering kept no prompt")
    if cfg.monitor.enabled and monitor_judges is None:
        raise ValueError("grpo.monitor.every > 0 needs the monitor's judges (train_grpo(..., monitor_judges=...))")
    all_prompts, all_rubrics = prompts, rubrics
    prompts, rubrics, held_prompts, held_rubrics = split_prompts(prompts, rubrics, cfg.monitor, "grpo.monitor")
    out = Path(cfg.output_dir or checkpoint_dir("grpo", run_key("grpo", {"settings": cfg.model_dump(), "data": [all_prompts, all_rubrics],
                                                                       "policy": model_identity(model_dir)})))
    args = GRPOConfig(
        output_dir=str(out / "trainer"),
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=cfg.bf16,
        use_vllm=cfg.use_vllm,
        seed=cfg.seed,
        logging_steps=1,
        **hf_checkpoint_args(cfg),
        report_to="none",
    )
    data = Dataset.from_list([{"prompt": policy_messages(p), "rubrics": r} for p, r in zip(prompts, rubrics)])
    tokenizer = load_tokenizer(model_dir, padding_side="left")
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}

    def rubric_reward(prompts, completions, completion_ids=None, **kwargs):
        """``reward_fn`` told which completions hit max_completion_length (TRL's own truncation rule)."""
        truncated = None if completion_ids is None else [not ids or ids[-1] not in ends for ids in completion_ids]
        rewards = reward_fn(prompts, completions, truncated=truncated, **kwargs)
        if judge_audit is not None:
            log.judged(judge_audit, trainer.accelerator)
        return rewards

    trainer = GRPOTrainer(model=model_dir, reward_funcs=[rubric_reward], args=args, train_dataset=data, processing_class=tokenizer)
    if held_prompts and len(held_prompts) < trainer.accelerator.num_processes:
        raise ValueError(f"grpo.monitor.prompts={len(held_prompts)} is fewer than the "
                         f"{trainer.accelerator.num_processes} processes")
    log = _StepLog(judge_audit, cfg, held_prompts, held_rubrics, monitor_judges, trainer, tokenizer)
    trainer.add_callback(log)
    checkpoint = latest_checkpoint(args.output_dir)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = out / "final"
    trainer.save_model(str(final))  # main process only; gathers FSDP / ZeRO-3 shards into a full state dict
    trainer.accelerator.wait_for_everyone()
    if cfg.cleanup_checkpoints and trainer.accelerator.is_main_process:
        remove_checkpoints(args.output_dir)
    return str(final), [h for h in trainer.state.log_history if "loss" in h or "reward" in h]


class _StepLog(TrainerCallback):
    """GRPO's per-step additions to the trainer's log: ``reward/unscored`` (and the judge's failure budget,
    checked after every reward call) and the over-optimisation monitor's ``monitor/*`` metrics.

    A ``transformers.TrainerCallback`` by duck typing (the trainer calls the ``on_*`` events it has):
    what a step measured is merged into that step's ``state.log_history`` entry when it is logged.
    """

    def __init__(self, judge_audit, cfg: GRPOParams, held_prompts, held_rubrics, judges, trainer, tokenizer):
        self.audit, self.cfg, self.trainer, self.tokenizer = judge_audit, cfg, trainer, tokenizer
        self.held_prompts, self.held_rubrics, self.judges = held_prompts, held_rubrics, judges
        self.last = judge_audit.counts() if judge_audit is not None else None
        self.so_far: dict[str, float] = {}
        self.pending: dict[str, float] = {}

    def judged(self, audit, accelerator) -> None:
        """After a reward call: the counts since the last call over the processes; the budget on the run's totals."""
        import torch

        from r2_write.judge.reward import COUNTS

        counts = audit.counts()
        delta = torch.tensor([float(counts[k] - self.last[k]) for k in COUNTS], device=accelerator.device)
        delta = dict(zip(COUNTS, accelerator.reduce(delta, reduction="sum").tolist()))
        self.last = counts
        self.so_far = {k: self.so_far.get(k, 0.0) + delta[k] for k in COUNTS}
        self.pending["reward/unscored"] = self.pending.get("reward/unscored", 0.0) + delta["unscored"]
        audit.check_budget(self.so_far)

    def on_step_end(self, args, state, control, **kwargs):
        if self.held_prompts and self.cfg.monitor.due(state.global_step):
            self.pending.update(self._monitor())
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.pending and state.log_history:
            state.log_history[-1].update(self.pending)
            self.pending = {}
        return control

    def _monitor(self) -> dict[str, float]:
        """Every process answers its share of the held-out prompts with the current policy; both judges score."""
        import time

        import torch
        from trl.models.utils import unwrap_model_for_generation

        from r2_write.rl.rollout import encode_prompts

        t0 = time.perf_counter()
        acc = self.trainer.accelerator
        mine = list(range(acc.process_index, len(self.held_prompts), acc.num_processes))
        prompts = [self.held_prompts[i] for i in mine]
        answers: list[str] = []
        if prompts:
            ids, mask = (t.to(acc.device) for t in encode_prompts(self.tokenizer, prompts, 4096))
            synced = acc.num_processes > 1 and acc.distributed_type in ("FSDP", "DEEPSPEED")  # sharded: every rank steps
            with (unwrap_model_for_generation(self.trainer.model_wrapped, acc) as model, torch.no_grad(),
                  fixed_sampling_seed(acc.device)):
                was_training = model.training
                model.eval()
                out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                     temperature=self.cfg.temperature, top_k=0, top_p=1.0,
                                     max_new_tokens=self.cfg.max_completion_length,
                                     pad_token_id=self.tokenizer.pad_token_id, synced_gpus=synced)
                model.train(was_training)
            answers = self.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
        sums = score_answers(self.judges, prompts, answers, [self.held_rubrics[i] for i in mine])
        total = acc.reduce(torch.tensor([sums["n"], sums["eval"], sums["reward"]], device=acc.device), reduction="sum")
        metrics = monitor_metrics(dict(zip(("n", "eval", "reward"), total.tolist())))
        metrics["time/monitor"] = time.perf_counter() - t0
        return metrics
