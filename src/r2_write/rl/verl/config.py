"""``ppo.verl``: the settings only the veRL engine has (the PPO settings stay in :class:`~r2_write.rl.ppo_config.PPOConfig`).

Every field maps to veRL keys in :mod:`r2_write.rl.verl.overrides` (``SCALE_KEYS``); the
defaults are the paper-scale choices for a 7B/8B policy and critic with 25k-token responses
on 8 x 80 GB (their memory arithmetic: :mod:`r2_write.rl.verl.memory`, ``docs/verl.md``).

>>> VerlConfig().sequence_budget(2048, 25088)
32768
>>> VerlConfig(ulysses_sequence_parallel_size=1, ppo_max_token_len_per_gpu=8192).sequence_budget(2048, 25088)
Traceback (most recent call last):
...
ValueError: ppo.verl.ppo_max_token_len_per_gpu (8192) x ulysses_sequence_parallel_size (1) = 8192 tokens cannot hold one sequence of max_prompt_length + max_new_tokens = 27136 tokens
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VerlConfig(BaseModel):
    """veRL engine settings (``ppo.verl``); read only with ``ppo.engine: verl``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    python: str = Field(
        ".venv-verl/bin/python",
        description="Python of veRL's own environment (built by `make verl-env`); veRL pins other torch/"
                    "transformers versions than the project, so it never runs in the Kedro process.",
    )
    n_gpus_per_node: int = Field(8, description="GPUs per node (trainer.n_gpus_per_node).")
    nnodes: int = Field(1, description="Nodes of the Ray cluster (trainer.nnodes).")
    rollout_name: str = Field("vllm", description="Rollout engine: 'vllm' or 'sglang' (actor_rollout_ref.rollout.name).")
    use_remove_padding: bool = Field(True, description="Pack sequences without padding (model.use_remove_padding).")
    use_dynamic_bsz: bool = Field(
        True, description="Micro-batches by token budget instead of a row count (actor.use_dynamic_bsz)."
    )
    ppo_max_token_len_per_gpu: int = Field(
        16384,
        description="Token budget of one actor micro-batch per GPU with use_dynamic_bsz (x the Ulysses size per "
                    "sequence-parallel group); must hold one prompt + response.",
    )
    critic_max_token_len_per_gpu: int | None = Field(
        None, description="The critic's token budget; None = 2 x ppo_max_token_len_per_gpu (veRL's advice)."
    )
    ulysses_sequence_parallel_size: int = Field(
        2, description="GPUs that split one sequence (Ulysses), actor, reference and critic."
    )
    param_offload: bool = Field(False, description="Offload the actor's and critic's FSDP parameters to CPU.")
    optimizer_offload: bool = Field(
        True, description="Offload the actor's and critic's optimizer states to CPU (AdamW: 12 bytes a parameter)."
    )
    ref_param_offload: bool = Field(True, description="Offload the reference model's parameters to CPU.")
    free_cache_engine: bool = Field(
        True, description="Rollout sleep mode: vLLM frees its weights and KV cache during the update."
    )
    use_fused_kernels: bool = Field(
        False, description="veRL's fused linear + log-prob kernels (never a [T, vocab] fp32 tensor)."
    )
    entropy_from_logits_with_chunking: bool = Field(
        True, description="Entropy over chunks of 2048 tokens (no full [T, vocab] fp32 softmax)."
    )
    entropy_checkpointing: bool = Field(True, description="Recompute the entropy in backward.")
    lr_warmup_steps_ratio: float = Field(0.0, description="Actor learning-rate warm-up share of the steps (Writing-RL: 0.4).")
    logger: list[str] = Field(
        ["console", "file"], description="veRL trackers; 'file' is read back into the stage's MLflow run."
    )
    extra: dict[str, Any] = Field(
        {}, description="Further veRL overrides by full key (e.g. {'actor_rollout_ref.rollout.max_num_seqs': 64}); "
                        "they must exist in veRL's ppo_trainer.yaml."
    )

    @model_validator(mode="after")
    def _check(self) -> VerlConfig:
        for name in ("n_gpus_per_node", "nnodes", "ppo_max_token_len_per_gpu", "ulysses_sequence_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ppo.verl.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.critic_max_token_len_per_gpu is not None and self.critic_max_token_len_per_gpu < 1:
            raise ValueError(f"ppo.verl.critic_max_token_len_per_gpu must be >= 1 or None, got "
                             f"{self.critic_max_token_len_per_gpu!r}")
        if self.rollout_name not in ("vllm", "sglang"):
            raise ValueError(f"ppo.verl.rollout_name must be 'vllm' or 'sglang', got {self.rollout_name!r}")
        if self.n_gpus_per_node % self.ulysses_sequence_parallel_size:
            raise ValueError(f"ppo.verl.ulysses_sequence_parallel_size ({self.ulysses_sequence_parallel_size}) must "
                             f"divide n_gpus_per_node ({self.n_gpus_per_node})")
        if not 0.0 <= self.lr_warmup_steps_ratio <= 1.0:
            raise ValueError(f"ppo.verl.lr_warmup_steps_ratio must be in [0, 1], got {self.lr_warmup_steps_ratio!r}")
        unknown = [name for name in self.logger if name not in ("console", "file", "mlflow", "tensorboard", "wandb")]
        if unknown:
            raise ValueError(f"ppo.verl.logger: unknown tracker(s) {unknown}")
        return self

    @property
    def n_gpus(self) -> int:
        """All GPUs of the run."""
        return self.n_gpus_per_node * self.nnodes

    @property
    def critic_token_budget(self) -> int:
        return self.critic_max_token_len_per_gpu or 2 * self.ppo_max_token_len_per_gpu

    def sequence_budget(self, max_prompt_length: int, max_new_tokens: int) -> int:
        """Tokens one actor micro-batch may hold per sequence-parallel group; fails when one sequence does not fit."""
        budget = self.ppo_max_token_len_per_gpu * self.ulysses_sequence_parallel_size
        need = max_prompt_length + max_new_tokens
        if self.use_dynamic_bsz and budget < need:
            raise ValueError(
                f"ppo.verl.ppo_max_token_len_per_gpu ({self.ppo_max_token_len_per_gpu}) x ulysses_sequence_parallel_size "
                f"({self.ulysses_sequence_parallel_size}) = {budget} tokens cannot hold one sequence of "
                f"max_prompt_length + max_new_tokens = {need} tokens"
            )
        return budget
