"""``params:ppo`` as overrides of veRL's own PPO config (``verl/trainer/config/ppo_trainer.yaml``, verl 0.9.1).

One table, :data:`PPO_KEYS`, maps each PPO setting to its veRL key(s); :data:`SCALE_KEYS` maps
the ``ppo.verl`` block; :data:`FIXED` holds what the project's recipe always sets (the
token-level reward path, in-reward k1 KL as the own loop, GAE). :func:`verl_overrides`
applies all three and :func:`hydra_args` writes them as ``key=value`` command-line overrides.
The over-optimisation monitor (``ppo.monitor``) is veRL's validation: ``monitor.every`` is
``trainer.test_freq``, the held-out prompts are ``data.val_files`` (``val_file``), and the
validation samples as training (``val_kwargs``, one answer per prompt).
``tests/rl/verl/test_overrides.py`` composes them against the installed veRL's
``ppo_trainer.yaml`` (no unknown key) and runs veRL's ``validate_config`` on the result.

veRL counts batches in prompts (``data.train_batch_size``, ``ppo_mini_batch_size``) and
multiplies by ``rollout.n``; the project counts rollouts. Settings veRL has no equivalent of
(``target_kl``, unwhitened advantages, ``min_p``, ``repetition_penalty``, a shared critic)
are refused by :func:`check_verl_settings` when ``PPOConfig`` loads with ``engine: verl``.

>>> from r2_write.rl.ppo_config import PPOConfig
>>> cfg = PPOConfig(engine="verl", critic="separate", batch_size=32, mini_batch_size=16, max_new_tokens=1024)
>>> o = verl_overrides(cfg, policy_dir="/m", train_file="/d/train.parquet", checkpoint_dir="/c", n_prompts=64)
>>> o["data.train_batch_size"], o["actor_rollout_ref.actor.ppo_mini_batch_size"], o["algorithm.kl_ctrl.kl_coef"]
(32, 16, 0.001)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# PPOConfig (r2_write.rl.ppo_config) appears in annotations only: ppo_config imports this module to validate.

REWARD_MANAGER_MODULE = "pkg://r2_write.rl.verl.reward_manager"
REWARD_MANAGER_NAME = "ProcessRewardManager"


@dataclass(frozen=True)
class Key:
    """One row of the mapping: a ``PPOConfig`` (or ``ppo.verl``) field, its veRL key(s), the conversion."""

    field: str
    verl: tuple[str, ...]
    convert: Callable[[Any, PPOConfig], Any] = lambda value, cfg: value
    note: str = ""


def _same(value, cfg):
    return value


# params:ppo -> veRL. ``field`` is a PPOConfig field; each veRL key gets ``convert(value, cfg)``.
PPO_KEYS: tuple[Key, ...] = (
    Key("learning_rate", ("actor_rollout_ref.actor.optim.lr",)),
    Key("critic_learning_rate", ("critic.optim.lr",)),
    Key("max_grad_norm", ("actor_rollout_ref.actor.optim.clip_grad", "critic.optim.clip_grad")),
    Key("ppo_epochs", ("actor_rollout_ref.actor.ppo_epochs", "critic.ppo_epochs")),
    Key("batch_size", ("data.train_batch_size",), lambda v, cfg: v // cfg.rollouts_per_prompt,
        "veRL counts prompts per step; x rollout.n rollouts"),
    Key("mini_batch_size", ("actor_rollout_ref.actor.ppo_mini_batch_size", "critic.ppo_mini_batch_size"),
        lambda v, cfg: v // cfg.rollouts_per_prompt, "in prompts, as train_batch_size"),
    Key("gradient_checkpointing", ("actor_rollout_ref.model.enable_gradient_checkpointing",
                                   "critic.model.enable_gradient_checkpointing")),
    Key("critic_warmup_steps", ("trainer.critic_warmup",)),
    Key("cliprange", ("actor_rollout_ref.actor.clip_ratio", "actor_rollout_ref.actor.clip_ratio_low",
                      "actor_rollout_ref.actor.clip_ratio_high")),
    Key("cliprange_value", ("critic.cliprange_value",)),
    Key("ent_coef", ("actor_rollout_ref.actor.entropy_coeff",)),
    Key("kl_coef", ("algorithm.kl_ctrl.kl_coef",), note="fixed in-reward k1 KL, as the own loop (FIXED)"),
    Key("gamma", ("algorithm.gamma",)),
    Key("lam", ("algorithm.lam",)),
    Key("rollouts_per_prompt", ("actor_rollout_ref.rollout.n",)),
    Key("temperature", ("actor_rollout_ref.rollout.temperature", "actor_rollout_ref.rollout.val_kwargs.temperature"),
        note="val_kwargs: the monitor samples as training does"),
    Key("top_k", ("actor_rollout_ref.rollout.top_k", "actor_rollout_ref.rollout.val_kwargs.top_k"),
        lambda v, cfg: v or -1, "0 (off) is veRL's -1"),
    Key("top_p", ("actor_rollout_ref.rollout.top_p", "actor_rollout_ref.rollout.val_kwargs.top_p")),
    Key("max_new_tokens", ("data.max_response_length",)),
    Key("max_prompt_length", ("data.max_prompt_length",)),
    Key("vllm_gpu_memory_utilization", ("actor_rollout_ref.rollout.gpu_memory_utilization",)),
    Key("vllm_tensor_parallel_size", ("actor_rollout_ref.rollout.tensor_model_parallel_size",)),
    Key("total_steps", ("trainer.total_training_steps",)),
    Key("seed", ("data.seed", "actor_rollout_ref.rollout.seed")),
    Key("save_every", ("trainer.save_freq",), lambda v, cfg: v or cfg.total_steps,
        "0 (final only) saves at the last step"),
    Key("keep_checkpoints", ("trainer.max_actor_ckpt_to_keep", "trainer.max_critic_ckpt_to_keep"),
        lambda v, cfg: v or None, "0 (keep all) is veRL's null"),
    Key("monitor", ("trainer.test_freq",), lambda v, cfg: v.every if v.enabled else -1,
        "monitor.every: veRL's validation on the held-out prompts; 0 (off) is -1"),
)

# ppo.verl -> veRL (``field`` is a VerlConfig field): the scale settings.
SCALE_KEYS: tuple[Key, ...] = (
    Key("n_gpus_per_node", ("trainer.n_gpus_per_node",)),
    Key("nnodes", ("trainer.nnodes",)),
    Key("rollout_name", ("actor_rollout_ref.rollout.name",)),
    Key("use_remove_padding", ("actor_rollout_ref.model.use_remove_padding", "critic.model.use_remove_padding")),
    Key("use_dynamic_bsz", ("actor_rollout_ref.actor.use_dynamic_bsz", "critic.use_dynamic_bsz")),
    Key("ppo_max_token_len_per_gpu", ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu",)),
    Key("critic_max_token_len_per_gpu", ("critic.ppo_max_token_len_per_gpu",),
        lambda v, cfg: cfg.verl.critic_token_budget, "None = 2 x the actor's"),
    Key("ulysses_sequence_parallel_size", ("actor_rollout_ref.actor.ulysses_sequence_parallel_size",
                                           "critic.ulysses_sequence_parallel_size")),
    Key("param_offload", ("actor_rollout_ref.actor.fsdp_config.param_offload", "critic.fsdp.param_offload")),
    Key("optimizer_offload", ("actor_rollout_ref.actor.fsdp_config.optimizer_offload", "critic.fsdp.optimizer_offload")),
    Key("ref_param_offload", ("actor_rollout_ref.ref.fsdp_config.param_offload",)),
    Key("free_cache_engine", ("actor_rollout_ref.rollout.free_cache_engine",)),
    Key("use_fused_kernels", ("actor_rollout_ref.model.use_fused_kernels",)),
    Key("entropy_from_logits_with_chunking", ("actor_rollout_ref.actor.entropy_from_logits_with_chunking",)),
    Key("entropy_checkpointing", ("actor_rollout_ref.actor.entropy_checkpointing",)),
    Key("lr_warmup_steps_ratio", ("actor_rollout_ref.actor.optim.lr_warmup_steps_ratio",)),
    Key("logger", ("trainer.logger",), lambda v, cfg: list(v)),
)

# What the project's recipe always sets.
FIXED: dict[str, Any] = {
    "trainer.use_v1": False,  # RayPPOTrainer (ray_trainer.py), which main.ProcessRewardTrainer subclasses
    "trainer.project_name": "r2_write",
    "trainer.resume_mode": "auto",  # a rerun after a kill resumes from the newest sharded checkpoint
    "trainer.val_before_train": False,  # the own monitor first measures after step monitor.every, never at step 0
    "actor_rollout_ref.rollout.val_kwargs.n": 1,  # one answer per held-out prompt, sampled (not greedy), as the own monitor
    "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
    "algorithm.adv_estimator": "gae",
    "algorithm.use_kl_in_reward": True,  # r_t = score_t - kl_coef * (logp - ref_logp), as compute_rewards
    "algorithm.kl_penalty": "kl",
    "algorithm.kl_ctrl.type": "fixed",
    "actor_rollout_ref.actor.use_kl_loss": False,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "critic.enable": True,
    "data.prompt_key": "prompt",
    "data.truncation": "left",  # the own loop keeps a long prompt's last max_prompt_length tokens
    "data.filter_overlong_prompts": False,
    "reward.reward_manager.source": "importlib",
    "reward.reward_manager.name": REWARD_MANAGER_NAME,
    "reward.reward_manager.module.path": REWARD_MANAGER_MODULE,
}


def check_verl_settings(cfg: PPOConfig) -> None:
    """Fail on the first PPO setting veRL cannot honour (called by ``PPOConfig`` with ``engine: verl``).

    Raises:
        ValueError: One line naming the field.
    """
    if cfg.critic != "separate":
        raise ValueError("PPOConfig.critic must be 'separate' with engine: verl (veRL's critic is a model of its own)")
    if cfg.target_kl is not None:
        raise ValueError("PPOConfig.target_kl has no veRL equivalent; set it to null with engine: verl")
    if not cfg.whiten_advantages:
        raise ValueError("PPOConfig.whiten_advantages: veRL's GAE always whitens; set it to true with engine: verl")
    if cfg.min_p or cfg.repetition_penalty != 1.0:
        raise ValueError("PPOConfig.min_p / repetition_penalty are not rollout settings of veRL; leave them off "
                         "with engine: verl")
    if cfg.mini_batch_size % cfg.rollouts_per_prompt:
        raise ValueError(f"PPOConfig.mini_batch_size ({cfg.mini_batch_size}) must be a multiple of rollouts_per_prompt "
                         f"({cfg.rollouts_per_prompt}) with engine: verl (veRL counts prompts)")
    cfg.verl.sequence_budget(cfg.max_prompt_length, cfg.max_new_tokens)
    extra_clash = sorted(set(cfg.verl.extra) & set(_managed_keys()))
    if extra_clash:
        raise ValueError(f"PPOConfig.verl.extra sets {extra_clash[0]!r}, which params:ppo sets (see "
                         f"r2_write.rl.verl.overrides); set the ppo field instead")


def _managed_keys() -> list[str]:
    return [k for row in PPO_KEYS + SCALE_KEYS for k in row.verl] + list(FIXED) + list(_PATH_KEYS)


_PATH_KEYS = ("actor_rollout_ref.model.path", "critic.model.path", "data.train_files", "data.val_files",
              "trainer.default_local_dir", "trainer.experiment_name", "trainer.total_epochs")


def verl_overrides(
    cfg: PPOConfig, *, policy_dir: str, train_file: str, checkpoint_dir: str, n_prompts: int,
    experiment: str = "ppo", val_file: str | None = None,
) -> dict[str, Any]:
    """veRL config overrides of one run: ``{veRL key: value}``.

    Args:
        cfg: The validated PPO settings (``engine: verl``).
        policy_dir: The starting policy (SFT model); actor, reference and critic start from it.
        train_file: The RL set in veRL's layout (:func:`r2_write.rl.verl.dataset.write_rl_set`).
        checkpoint_dir: Where veRL writes ``global_step_<n>/`` (resumed from after a kill).
        n_prompts: Prompts in the RL set (epochs enough for ``total_steps``).
        experiment: veRL's experiment name (the variant, ``ppo`` or ``ppo_outcome``).
        val_file: The monitor's held-out prompts in veRL's layout (veRL's validation set); required
            when ``cfg.monitor`` is on (``trainer.test_freq = monitor.every``).

    Returns:
        An ordered dict; :func:`hydra_args` writes it for the command line.
    """
    out: dict[str, Any] = {}
    for row in PPO_KEYS:
        value = row.convert(getattr(cfg, row.field), cfg)
        out.update({key: value for key in row.verl})
    for row in SCALE_KEYS:
        value = row.convert(getattr(cfg.verl, row.field), cfg)
        out.update({key: value for key in row.verl})
    out.update(FIXED)
    if cfg.monitor.enabled and not val_file:
        raise ValueError("ppo.monitor is on: verl_overrides needs val_file, the held-out prompts (veRL's validation set)")
    steps_per_epoch = max(1, n_prompts // cfg.prompts_per_step)  # veRL's dataloader drops the last partial batch
    out.update({
        "actor_rollout_ref.model.path": policy_dir,
        "critic.model.path": policy_dir,
        "data.train_files": train_file,
        "data.val_files": val_file if cfg.monitor.enabled else train_file,  # required by veRL even with test_freq -1
        "trainer.default_local_dir": checkpoint_dir,
        "trainer.experiment_name": experiment,
        "trainer.total_epochs": math.ceil(cfg.total_steps / steps_per_epoch),
    })
    if not cfg.verl.use_dynamic_bsz:  # row-count micro-batches: the project's micro_batch_size, per GPU
        for key in ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", "critic.ppo_micro_batch_size_per_gpu",
                    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
                    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu"):
            out[key] = cfg.micro_batch_size
    out.update(cfg.verl.extra)
    return out


def hydra_args(overrides: dict[str, Any]) -> list[str]:
    """``key=value`` command-line overrides (Hydra's grammar: lists in brackets, None as null, strings quoted when needed).

    >>> hydra_args({"a.b": 1, "c": None, "d": ["console", "file"], "e": True, "f": "/x/y.parquet", "g": "a b"})
    ['a.b=1', 'c=null', "d=['console','file']", 'e=true', 'f=/x/y.parquet', "g='a b'"]
    """
    return [f"{key}={_hydra_value(value)}" for key, value in overrides.items()]


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) if not isinstance(v, str) else _quoted(v) for v in value) + "]"
    text = str(value)
    plain = all(ch.isalnum() or ch in "/._-:+@~" for ch in text)
    return text if plain and text else _quoted(text)


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def mapping_table() -> list[tuple[str, str, str]]:
    """``(params:ppo key, veRL key, note)`` rows of the two tables, for the docs."""
    rows = [(f"ppo.{r.field}", key, r.note) for r in PPO_KEYS for key in r.verl]
    rows += [(f"ppo.verl.{r.field}", key, r.note) for r in SCALE_KEYS for key in r.verl]
    return rows
