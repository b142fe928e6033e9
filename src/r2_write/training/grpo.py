"""GRPO baseline: TRL's ``GRPOTrainer`` with the rubric judge as a sequence-level reward."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from pydantic import ConfigDict, Field

from r2_write.llm.cache import model_identity
from r2_write.prompts.policy import policy_messages
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


def train_grpo(
    model_dir: str, prompts: list[str], rubrics: list[str], reward_fn: Callable, cfg: GRPOParams
) -> tuple[str, list[dict]]:
    """Train ``model_dir`` with GRPO; ``reward_fn(prompts, completions, rubrics=..., truncated=...) -> list[float]``.

    Returns:
        (directory of the saved model, the trainer's per-step log history).
    """
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    if not prompts:
        raise ValueError("the RL set is empty: difficulty filtering kept no prompt")
    out = Path(cfg.output_dir or checkpoint_dir("grpo", run_key("grpo", {"settings": cfg.model_dump(), "data": [prompts, rubrics],
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
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}

    def rubric_reward(prompts, completions, completion_ids=None, **kwargs):
        """``reward_fn`` told which completions hit max_completion_length (TRL's own truncation rule)."""
        truncated = None if completion_ids is None else [not ids or ids[-1] not in ends for ids in completion_ids]
        return reward_fn(prompts, completions, truncated=truncated, **kwargs)

    trainer = GRPOTrainer(model=model_dir, reward_funcs=[rubric_reward], args=args, train_dataset=data, processing_class=tokenizer)
    checkpoint = latest_checkpoint(args.output_dir)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = out / "final"
    trainer.save_model(str(final))  # main process only; gathers FSDP / ZeRO-3 shards into a full state dict
    trainer.accelerator.wait_for_everyone()
    if cfg.cleanup_checkpoints and trainer.accelerator.is_main_process:
        remove_checkpoints(args.output_dir)
    return str(final), [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
