"""The generated overrides compose against veRL's own ppo_trainer.yaml and pass veRL's config validation."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from r2_write.config import ConfigError, parse_params
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.verl.overrides import PPO_KEYS, SCALE_KEYS, hydra_args, verl_overrides
from tests.rl.verl.conftest import compose


def paper_cfg(project_root, **changes) -> PPOConfig:
    params = yaml.safe_load((project_root / "conf" / "paper" / "parameters_ppo.yml").read_text())["ppo"]
    params.pop("reward"), params.pop("launch", None)
    return parse_params(PPOConfig, {**params, **changes}, "ppo")


def overrides_of(cfg: PPOConfig, n_prompts: int = 100, policy_dir: str = "/models/sft") -> dict:
    return verl_overrides(cfg, policy_dir=policy_dir, train_file="/data/train.parquet", checkpoint_dir="/ckpt",
                          n_prompts=n_prompts, val_file="/data/val.parquet" if cfg.monitor.enabled else None)


def validate(config) -> None:
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def test_conf_paper_composes_with_no_unknown_key_and_passes_veRLs_validation(project_root, embedded_model_dir):
    cfg = paper_cfg(project_root)
    assert cfg.engine == "verl"
    overrides = overrides_of(cfg, policy_dir=str(embedded_model_dir))  # veRL's validation reads the model config
    config = compose(hydra_args(overrides))
    for key, value in overrides.items():  # every key exists in veRL's config and holds our value
        got = OmegaConf.select(config, key, throw_on_missing=True)
        assert (OmegaConf.to_container(got) if OmegaConf.is_config(got) else got) == value, key
    validate(config)
    # what the paper run gets (prompts per step, the token-level path, the GAE/KL settings of the own loop)
    assert config.data.train_batch_size == 32 and config.actor_rollout_ref.actor.ppo_mini_batch_size == 16
    assert config.reward.reward_manager.source == "importlib" and config.trainer.use_v1 is False
    assert config.algorithm.use_kl_in_reward is True and config.algorithm.kl_penalty == "kl"
    assert config.actor_rollout_ref.actor.ulysses_sequence_parallel_size == 2
    assert config.data.max_response_length == 25088


def test_a_small_row_count_run_passes_veRLs_batch_checks(project_root, embedded_model_dir):
    cfg = paper_cfg(project_root, batch_size=4, mini_batch_size=2, micro_batch_size=1, max_new_tokens=64,
                    verl={"n_gpus_per_node": 1, "ulysses_sequence_parallel_size": 1, "use_dynamic_bsz": False})
    validate(compose(hydra_args(overrides_of(cfg, n_prompts=8, policy_dir=str(embedded_model_dir)))))


def test_veRLs_batch_check_catches_a_batch_smaller_than_the_gpus(project_root, embedded_model_dir):
    """The validation these tests run can fail: 4 rollouts cannot be split over 8 GPUs by row count."""
    cfg = paper_cfg(project_root, batch_size=4, mini_batch_size=4, max_new_tokens=64,
                    verl={"n_gpus_per_node": 8, "ulysses_sequence_parallel_size": 1, "use_dynamic_bsz": False})
    with pytest.raises(AssertionError, match=r"real_train_batch_size \(4\) must be divisible by minimal possible batch size \(8\)"):
        validate(compose(hydra_args(overrides_of(cfg, n_prompts=8, policy_dir=str(embedded_model_dir)))))


def test_an_unknown_key_fails_to_compose(project_root):
    cfg = paper_cfg(project_root, verl={"extra": {"actor_rollout_ref.actor.no_such_setting": 1}})
    with pytest.raises(Exception, match="no_such_setting"):
        compose(hydra_args(overrides_of(cfg)))


def test_every_table_row_names_a_config_field(project_root):
    fields, verl_fields = set(PPOConfig.model_fields), set(PPOConfig.model_fields["verl"].annotation.model_fields)
    assert {r.field for r in PPO_KEYS} <= fields and {r.field for r in SCALE_KEYS} <= verl_fields


@pytest.mark.parametrize("change,field", [
    ({"critic": "shared"}, "critic"), ({"target_kl": 0.1}, "target_kl"), ({"whiten_advantages": False}, "whiten_advantages"),
    ({"repetition_penalty": 1.2}, "repetition_penalty"), ({"engine": "ray"}, "engine"),
    ({"verl": {"ulysses_sequence_parallel_size": 1, "ppo_max_token_len_per_gpu": 8192}}, "ppo_max_token_len_per_gpu"),
    ({"verl": {"extra": {"data.train_batch_size": 8}}}, "verl.extra"),
    ({"verl": {"rollout_name": "hf"}}, "rollout_name"),
])
def test_settings_veRL_cannot_honour_fail_at_load_naming_the_field(project_root, change, field):
    with pytest.raises(ConfigError, match=field):
        paper_cfg(project_root, **change)
