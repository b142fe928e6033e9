"""Supervised fine-tuning on synthesized trajectories with TRL's ``SFTTrainer``.

Each example is a chat: the user prompt, then the assistant's full thinking trajectory
(plan, draft, reflections, revisions, ``</think>``) and final answer. The loss covers the
completion only. Full fine-tuning or LoRA (peft) by configuration; a LoRA adapter is
merged before saving so every later stage loads a plain checkpoint.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from r2_write.llm.cache import model_identity
from r2_write.prompts.policy import policy_messages
from r2_write.runs import CheckpointParams, checkpoint_dir, hf_checkpoint_args, latest_checkpoint, remove_checkpoints, run_key

logger = logging.getLogger(__name__)


class LoraParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Train a LoRA adapter instead of all weights.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt.")


class SFTParams(CheckpointParams):
    """``params:sft``: the TRL SFTConfig fields we expose, with our defaults."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs over the SFT set (ignored if max_steps > 0).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    per_device_train_batch_size: int = Field(2, ge=1, description="Batch size per device.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(
        1024, ge=16, description="Longest example in tokens (chat-templated prompt + trajectory + answer); longer "
                                 "ones are dropped and counted at the SFT node, never truncated (they would lose "
                                 "their answer). conf/paper sizes it with r2_write.training.length_budget.")
    max_overlong_fraction: float = Field(
        0.05, ge=0, le=1, description="The SFT node fails when more than this share of the examples is longer than "
                                      "max_length (raise max_length); up to it they are dropped and logged.")
    padding_free: bool = Field(
        False, description="TRL padding-free batches: the examples of a batch concatenated without padding (long, "
                           "uneven trajectories); max_length is then enforced by the node's drop alone.")
    lm_head_chunk_size: int | None = Field(
        None, ge=1, description="Token rows per tile of TRL's fused LM-head loss (its fp32 [rows, vocab] logits); "
                                "None = TRL 1.16's 32768, one tile for any sequence up to 32k tokens, so no saving "
                                "(docs/results-memory.md).")
    warmup_steps: float = Field(0, ge=0, description="Linear warm-up: steps, or a share of training if < 1.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    bf16: bool = Field(False, description="bfloat16 mixed precision (GPU).")
    seed: int = Field(0, description="Training seed.")
    lora: LoraParams = Field(default_factory=LoraParams)


def to_chat_examples(prompts: list[str], completions: list[str]) -> list[dict]:
    """TRL prompt-completion conversational rows.

    >>> to_chat_examples(["Q"], ["<think>..</think>A"])[0]["completion"][0]["role"]
    'assistant'
    """
    return [
        {"prompt": policy_messages(p), "completion": [{"role": "assistant", "content": c}]}
        for p, c in zip(prompts, completions)
    ]


@contextmanager
def _lm_head_tiles(rows: int | None):
    """TRL's fused LM head (``add_fused_lm_head``, always on in SFTTrainer) in tiles of ``rows`` tokens while training.

    TRL 1.16 reads the tile size from a module constant at every call (no SFTConfig field);
    it is set here for the training and put back after.
    """
    if rows is None:
        yield
        return
    import trl.trainer.utils as trl_utils

    default = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = rows
    try:
        yield
    finally:
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = default


def example_lengths(tokenizer, prompts: list[str], completions: list[str]) -> list[int]:
    """Tokens of each SFT example as TRL's ``SFTTrainer`` tokenizes it: the chat template over prompt + completion."""
    return [len(tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True, return_dict=True)["input_ids"])
            for ex in to_chat_examples(prompts, completions)]


def overlong_examples(tokenizer, prompts: list[str], completions: list[str], cfg: SFTParams) -> list[int]:
    """Indices of the examples longer than ``cfg.max_length`` tokens (TRL would cut their answer off silently).

    Raises:
        ConfigError: More than ``cfg.max_overlong_fraction`` of the examples are that long (the
            rule: a few outliers are dropped, a budget too small for the data is a configuration error).
    """
    from r2_write.config import ConfigError

    lengths = example_lengths(tokenizer, prompts, completions)
    over = [i for i, n in enumerate(lengths) if n > cfg.max_length]
    if over and len(over) > cfg.max_overlong_fraction * len(lengths):
        raise ConfigError(
            f"sft.max_length={cfg.max_length}: {len(over)} of {len(lengths)} SFT examples are longer (longest "
            f"{max(lengths)} tokens), more than sft.max_overlong_fraction={cfg.max_overlong_fraction}; raise "
            f"sft.max_length (r2_write.training.length_budget) or sft.max_overlong_fraction")
    return over


def train_sft(model_dir: str, prompts: list[str], completions: list[str], cfg: SFTParams) -> tuple[str, list[dict]]:
    """Fine-tune ``model_dir`` on (prompt, trajectory) pairs.

    Args:
        model_dir: Starting checkpoint (save_pretrained directory).
        prompts: User prompts.
        completions: Target assistant turns (trajectory + final answer).
        cfg: Training settings.

    Returns:
        (directory of the saved model, the trainer's log history: one dict per logging step).
    """
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from r2_write.llm.loading import load_tokenizer

    if not prompts:
        raise ValueError("the SFT set is empty: no trajectory passed scoring; lower scoring.min_final_score or synthesize more prompts")
    out = Path(cfg.output_dir or checkpoint_dir("sft", run_key("sft", {"settings": cfg.model_dump(), "data": [prompts, completions],
                                                                     "base": model_identity(model_dir)})))
    args = SFTConfig(
        output_dir=str(out / "trainer"),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=None if cfg.padding_free else cfg.max_length,  # padding-free: the node dropped longer ones
        padding_free=cfg.padding_free,
        warmup_steps=cfg.warmup_steps,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=cfg.bf16,
        seed=cfg.seed,
        logging_steps=1,
        **hf_checkpoint_args(cfg),
        report_to="none",
        completion_only_loss=True,
        dataset_num_proc=None,
    )
    peft_config = (
        LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                   target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
        if cfg.lora.enabled else None
    )
    tokenizer = load_tokenizer(model_dir)
    trainer = SFTTrainer(
        model=model_dir,
        args=args,
        train_dataset=Dataset.from_list(to_chat_examples(prompts, completions)),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    checkpoint = latest_checkpoint(args.output_dir)
    with _lm_head_tiles(cfg.lm_head_chunk_size):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = out / "final"
    accelerator = trainer.accelerator  # several processes under accelerate launch: only the main one writes
    if not cfg.lora.enabled:
        trainer.save_model(str(final))  # main process; gathers FSDP / ZeRO-3 shards into a full state dict
    elif accelerator.is_main_process:  # merged (data parallelism: every process holds the whole adapter)
        accelerator.unwrap_model(trainer.model).merge_and_unload().save_pretrained(final)
        tokenizer.save_pretrained(final)
    accelerator.wait_for_everyone()
    if cfg.cleanup_checkpoints and accelerator.is_main_process:
        remove_checkpoints(args.output_dir)
    history = [h for h in trainer.state.log_history if "loss" in h]
    logger.info("SFT: %d steps, first loss %.4f, last loss %.4f", trainer.state.global_step,
                history[0]["loss"] if history else float("nan"), history[-1]["loss"] if history else float("nan"))
    return str(final), history
