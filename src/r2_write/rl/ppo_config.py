"""Hyperparameters of our PPO with token-level process rewards (read by ``rl/trainer.py``, ``rl/ppo.py``, ``rl/rollout.py``).

Defaults follow the Writing-RL / veRL recipe R2-Write builds on (actor lr 1e-6, critic lr
1e-5, KL 0.001, batch 32, mini-batch 16, one rollout per prompt, temperature 1). A Kedro
node builds it first thing (``parse_params(PPOConfig, params, "ppo")``), so YAML and code cannot
drift apart: an unknown key or a value of the wrong type fails with a message naming the field.

Parameters are grouped as follows.

Optimisation:
    learning_rate, critic_learning_rate, max_grad_norm, ppo_epochs, batch_size,
    mini_batch_size, micro_batch_size, gradient_checkpointing, mixed_precision, logits_chunk_size.
Critic:
    critic ("shared": a value head on the policy's last hidden state, one optimizer;
    "separate": veRL's critic, a second copy of the starting backbone with its own value head,
    AdamW at critic_learning_rate and gradient clipping), critic_warmup_steps.
PPO objective:
    cliprange, cliprange_value, vf_coef, ent_coef, target_kl, whiten_advantages.
Rewards and advantages:
    kl_coef, gamma, lam, process_weight.
Rollouts:
    rollouts_per_prompt, temperature, top_k, top_p, min_p, repetition_penalty,
    max_new_tokens, max_prompt_length, check_length_budget, generation_batch_size, use_vllm
    (vllm_gpu_memory_utilization, vllm_tensor_parallel_size, vllm_sleep_mode).
    Sampling is set explicitly (nothing comes from the checkpoint's generation_config.json);
    top_k, top_p < 1, min_p and repetition_penalty != 1 are off by default: they sample from
    another distribution than the one PPO's logprobs score (:meth:`PPOConfig.sampling_restrictions`).
Run:
    total_steps, seed, save_every, output_dir.

Derived (properties, not arguments): ``num_mini_batches`` (mini-batches per epoch),
``prompts_per_step`` (distinct prompts per step) and ``grad_accum_steps`` (micro-batches per
mini-batch).

>>> cfg = PPOConfig(batch_size=4, mini_batch_size=2, rollouts_per_prompt=2)
>>> cfg.num_mini_batches, cfg.prompts_per_step, cfg.micro_batch_size
(2, 2, 2)
>>> PPOConfig(top_k=50, repetition_penalty=1.3).sampling_restrictions()
['top_k=50', 'repetition_penalty=1.3']
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from r2_write.rl.monitor import MonitorParams
from r2_write.rl.verl.config import VerlConfig


class PPOConfig(BaseModel):
    """Configuration of :func:`r2_write.rl.trainer.train`; every field has a default and a description.

    Types are strict, as YAML gives them (an int is no bool, a float is finite); unknown keys
    are rejected.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # --- optimisation
    learning_rate: float = Field(
        1e-6, description="Actor (policy) learning rate; the paper recipe uses 1e-6, tiny runs 1e-5."
    )
    critic_learning_rate: float = Field(
        1e-5, description="Critic learning rate (the value head, or the whole separate critic)."
    )
    max_grad_norm: float = Field(1.0, description="Global gradient-norm clip per optimizer step.")
    ppo_epochs: int = Field(1, description="Passes over each step's rollouts.")
    batch_size: int = Field(32, description="Rollouts (prompt x sample) per PPO step, over all processes.")
    mini_batch_size: int = Field(16, description="Rollouts per optimizer step, over all processes.")
    micro_batch_size: int | None = Field(
        None, description="Rollouts per forward/backward pass (gradient accumulation); None = mini_batch_size."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    logits_chunk_size: int = Field(
        1024,
        description="Response positions projected through the LM head at a time when scoring (log-probs, entropy): "
                    "no [T, vocab] fp32 logits of a whole sequence; 0 = unchunked (r2_write.rl.model.chunked_logprobs).",
    )
    mixed_precision: str = Field("no", description="Accelerate mixed precision: 'no', 'bf16' or 'fp16'.")
    # --- critic
    critic: str = Field(
        "shared",
        description="'shared': a value head on the policy's last hidden state (one model, CPU-friendly); "
                    "'separate': veRL's critic, a second copy of the starting backbone with its own value "
                    "head, optimizer (critic_learning_rate) and gradient clipping.",
    )
    critic_warmup_steps: int = Field(
        0,
        description="First PPO steps that update only the critic, the actor not stepped (veRL critic_warmup); "
                    "needs critic: separate.",
    )
    # --- PPO objective
    cliprange: float = Field(0.2, description="Policy ratio clip epsilon.")
    cliprange_value: float = Field(0.2, description="Value clip around the rollout's values.")
    vf_coef: float = Field(
        0.1, description="Weight of the value loss in the shared model's loss (a separate critic has its own)."
    )
    ent_coef: float = Field(0.0, description="Entropy bonus weight (0 = entropy only logged).")
    target_kl: float | None = Field(
        None, description="Stop this step's updates once a mini-batch's approx KL exceeds it; None = never."
    )
    whiten_advantages: bool = Field(True, description="Normalise advantages to zero mean, unit variance per step.")
    # --- rewards and advantages
    kl_coef: float = Field(0.001, description="Per-token KL penalty to the reference model.")
    gamma: float = Field(1.0, description="Discount factor.")
    lam: float = Field(0.95, description="GAE lambda.")
    process_weight: float = Field(
        0.5,
        description="Lambda: weight of the process reward (step rewards) in [0, 1], so the process term never "
                    "outweighs the outcome; 0 = outcome-only ablation. Its one home (the reward settings, "
                    "ProcessRewardConfig, have no lambda).",
    )
    # --- rollouts
    rollouts_per_prompt: int = Field(1, description="Samples per prompt in a step.")
    temperature: float = Field(1.0, description="Sampling temperature (also divides the logits).")
    top_k: int = Field(0, description="Sample from the k most likely tokens only; 0 = off.")
    top_p: float = Field(1.0, description="Nucleus sampling mass (1.0 = sample the full policy).")
    min_p: float | None = Field(
        None, description="Drop tokens below min_p x the top token's probability; None or 0 = off."
    )
    repetition_penalty: float = Field(
        1.0, description="Penalise tokens already in the prompt or response; 1.0 = off."
    )
    max_new_tokens: int = Field(1024, description="Response length limit in tokens.")
    max_prompt_length: int = Field(1024, description="Prompt tokens kept (from the end) after the chat template.")
    check_length_budget: bool = Field(
        True,
        description="The PPO node fails when max_new_tokens is shorter than the 95th percentile of the SFT "
                    "trajectories' token lengths (the policy would be cut off mid-trajectory).",
    )
    generation_batch_size: int | None = Field(
        None, description="Prompts per generate() call; None = all of a step's prompts at once."
    )
    use_vllm: bool = Field(
        False,
        description="Sample rollouts with vLLM in the training process (GPU; TRL's VLLMGeneration, colocate "
                    "mode), its weights synced from the policy after every update.",
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, description="Share of each GPU's memory vLLM may take (the rest trains)."
    )
    vllm_tensor_parallel_size: int = Field(1, description="GPUs per vLLM engine.")
    vllm_sleep_mode: bool = Field(
        False,
        description="Put the colocated vLLM engine to sleep (level 2: weights and KV cache released) after each "
                    "rollout, so the update gets its GPU memory back; woken and re-synced before the next rollout.",
    )
    # --- run
    total_steps: int = Field(100, description="PPO steps (rollout + update) to run.")
    seed: int = Field(42, description="Seed of prompt order and sampling (re-seeded per step).")
    save_every: int = Field(50, description="Checkpoint every N steps; 0 = only the final model.")
    keep_checkpoints: int = Field(
        1, description="Newest checkpoints kept on disk (older ones are deleted); 0 = keep all."
    )
    cleanup_checkpoints: bool = Field(
        True,
        description="Delete the checkpoints once training finished (final/ stays); False keeps them to continue "
                    "the run later with more total_steps.",
    )
    output_dir: str = Field("data/06_models/ppo", description="Where checkpoint-<step>/ and final/ are written.")
    monitor: MonitorParams = Field(
        default_factory=MonitorParams,
        description="Over-optimisation monitor (r2_write.rl.monitor): every N steps the reward judge and eval_judge "
                    "score answers to held-out RL prompts; every: 0 = off.",
    )
    reuse_trained: bool = Field(True, description="Kedro nodes: reuse the model of an identical finished training "
                                "(same data, settings, models and code) instead of training again (r2_write.training.reuse).")

    # --- engine
    engine: str = Field(
        "own",
        description="'own': this package's PPO (r2_write.rl.trainer; CPU, a few GPUs); 'verl': veRL's PPO trainer in "
                    "its own environment with the same token-level process reward (r2_write.rl.verl; paper scale).",
    )
    verl: VerlConfig = Field(default_factory=VerlConfig, description="veRL engine settings (engine: verl only).")

    @model_validator(mode="after")
    def _check(self) -> PPOConfig:
        positive = ("learning_rate", "critic_learning_rate", "max_grad_norm", "ppo_epochs", "batch_size",
                    "mini_batch_size", "cliprange", "cliprange_value", "temperature", "max_new_tokens",
                    "max_prompt_length", "rollouts_per_prompt", "total_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("vf_coef", "ent_coef", "kl_coef", "save_every", "keep_checkpoints", "logits_chunk_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"PPOConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.process_weight <= 1:
            raise ValueError(f"PPOConfig.process_weight must be in [0, 1] (the process term must not outweigh the "
                             f"outcome), got {self.process_weight!r}")
        if self.vllm_tensor_parallel_size < 1:
            raise ValueError(
                f"PPOConfig.vllm_tensor_parallel_size must be >= 1, got {self.vllm_tensor_parallel_size!r}"
            )
        for name in ("gamma", "lam", "top_p", "vllm_gpu_memory_utilization"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"PPOConfig.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if self.critic not in ("shared", "separate"):
            raise ValueError(f"PPOConfig.critic must be 'shared' or 'separate', got {self.critic!r}")
        if self.critic_warmup_steps < 0:
            raise ValueError(f"PPOConfig.critic_warmup_steps must be >= 0, got {self.critic_warmup_steps!r}")
        if self.critic_warmup_steps and self.critic != "separate":
            raise ValueError("PPOConfig.critic_warmup_steps needs critic: separate (a shared value head trains with "
                             "the policy)")
        if self.top_k < 0:
            raise ValueError(f"PPOConfig.top_k must be >= 0 (0 = off), got {self.top_k!r}")
        if self.min_p is not None and not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"PPOConfig.min_p must be in [0, 1] or None, got {self.min_p!r}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"PPOConfig.repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty!r}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"PPOConfig.target_kl must be > 0 or None, got {self.target_kl!r}")
        if self.batch_size % self.mini_batch_size:
            raise ValueError(
                f"PPOConfig.batch_size ({self.batch_size}) must be a multiple of mini_batch_size "
                f"({self.mini_batch_size})"
            )
        if self.batch_size % self.rollouts_per_prompt:
            raise ValueError(
                f"PPOConfig.batch_size ({self.batch_size}) must be a multiple of rollouts_per_prompt "
                f"({self.rollouts_per_prompt})"
            )
        if self.micro_batch_size is None:
            self.micro_batch_size = self.mini_batch_size
        if self.micro_batch_size <= 0 or self.mini_batch_size % self.micro_batch_size:
            raise ValueError(
                f"PPOConfig.micro_batch_size ({self.micro_batch_size}) must divide mini_batch_size "
                f"({self.mini_batch_size})"
            )
        if self.generation_batch_size is not None and self.generation_batch_size <= 0:
            raise ValueError(f"PPOConfig.generation_batch_size must be > 0 or None, got {self.generation_batch_size!r}")
        if self.engine not in ("own", "verl"):
            raise ValueError(f"PPOConfig.engine must be 'own' or 'verl', got {self.engine!r}")
        if self.engine == "verl":  # settings veRL cannot honour fail here, one line naming the field
            from r2_write.rl.verl.overrides import check_verl_settings

            check_verl_settings(self)
        return self

    # --- derived
    @property
    def num_mini_batches(self) -> int:
        """Mini-batches per epoch: ``batch_size // mini_batch_size``."""
        return self.batch_size // self.mini_batch_size

    @property
    def prompts_per_step(self) -> int:
        """Distinct prompts per step: ``batch_size // rollouts_per_prompt``."""
        return self.batch_size // self.rollouts_per_prompt

    @property
    def grad_accum_steps(self) -> int:
        """Micro-batches per mini-batch: ``mini_batch_size // micro_batch_size``."""
        return self.mini_batch_size // self.micro_batch_size

    def sampling_restrictions(self) -> list[str]:
        """The rollout settings that make sampling differ from the policy's (temperature-scaled) distribution.

        PPO scores each sampled token with the full distribution, so with any of these the old
        logprobs belong to another distribution than the one sampled (``train`` warns, as TRL does).
        """
        restrictions = []
        if self.top_k:
            restrictions.append(f"top_k={self.top_k}")
        if self.top_p < 1.0:
            restrictions.append(f"top_p={self.top_p}")
        if self.min_p:
            restrictions.append(f"min_p={self.min_p}")
        if self.repetition_penalty != 1.0:
            restrictions.append(f"repetition_penalty={self.repetition_penalty}")
        return restrictions
