"""parse_params: one ConfigError naming every bad field; LLM config rules."""

from __future__ import annotations

import pytest

from r2_write.config import ConfigError, parse_params
from r2_write.llm.config import LLMConfig, SamplingParams
from r2_write.roles import client_for, judge_for


def test_valid_params_and_passthrough():
    cfg = parse_params(LLMConfig, {"backend": "openai", "model": "gpt", "api_key_env": "OPENAI_API_KEY"}, "llm.judge")
    assert cfg.backend == "openai" and cfg.api_key_env == "OPENAI_API_KEY"
    assert parse_params(LLMConfig, cfg, "llm.judge") is cfg
    assert parse_params(LLMConfig, None, "llm.judge") == LLMConfig()


def test_unknown_backend_names_the_field():
    with pytest.raises(ConfigError) as exc:
        parse_params(LLMConfig, {"backend": "llamacpp"}, "llm.writer")
    msg = str(exc.value)
    assert "parameter 'llm.writer.backend'" in msg
    assert "'llamacpp'" in msg and "transformers" in msg
    assert "--params" in msg


def test_every_bad_field_is_listed():
    with pytest.raises(ConfigError) as exc:
        parse_params(LLMConfig, {"batch_size": 0, "max_concurrency": "many", "colour": "red"}, "llm.judge")
    msg = str(exc.value)
    for field in ("llm.judge.batch_size", "llm.judge.max_concurrency", "llm.judge.colour"):
        assert f"parameter '{field}'" in msg
    assert "Extra inputs are not permitted" in msg


def test_nested_field_path():
    from r2_write.synthesis import SynthesisConfig

    with pytest.raises(ConfigError, match=r"parameter 'synthesis\.loop\.max_rounds'.*greater than or equal to 1"):
        parse_params(SynthesisConfig, {"max_rounds": 0}, "synthesis.loop")


@pytest.mark.parametrize("value", ["sk-proj-abc123def456", "sk-live key", "abc$def"])
def test_api_key_env_that_looks_like_a_key_is_rejected(value):
    with pytest.raises(ConfigError) as exc:
        parse_params(LLMConfig, {"backend": "openai", "api_key_env": value}, "llm.judge")
    assert "parameter 'llm.judge.api_key_env'" in str(exc.value)
    assert "NAME of an environment variable" in str(exc.value)


def test_config_error_never_echoes_a_key():
    """A real key pasted into api_key_env must not be printed into logs by the error message."""
    with pytest.raises(ConfigError) as exc:
        parse_params(LLMConfig, {"api_key_env": "sk-proj-SECRET123", "batch_size": 0}, "llm.judge")
    assert "SECRET123" not in str(exc.value)
    assert "(got 0)" in str(exc.value)  # other fields still show the offending value
    assert exc.value.__cause__ is None and exc.value.__suppress_context__  # no pydantic traceback either


def test_sampling_params_are_frozen_and_bounded():
    s = SamplingParams()
    with pytest.raises(Exception):
        s.seed = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="sampling.top_p"):
        parse_params(SamplingParams, {"top_p": 0}, "sampling")


def test_client_for_missing_role():
    with pytest.raises(ValueError, match="parameters 'llm.writer' missing"):
        client_for({"judge": {}}, "writer")


def test_client_for_bad_role_config_names_role():
    with pytest.raises(ConfigError, match="llm.judge.backend"):
        client_for({"judge": {"backend": "gpt"}}, "judge")


def test_judge_params_validated(monkeypatch):
    import r2_write.roles as roles

    monkeypatch.setattr(roles, "client_for", lambda llm, role: object())
    with pytest.raises(ConfigError, match="judge.mode"):
        judge_for({}, {"mode": "vote"})


def test_ppo_config_errors_name_the_field_and_list_the_known_ones():
    """PPOConfig is a pydantic model like every stage config: strict types, unknown keys rejected, plain messages."""
    from r2_write.rl.ppo_config import PPOConfig

    with pytest.raises(ConfigError, match=r"parameter 'ppo\.lrr': unknown field; known fields: .*learning_rate"):
        parse_params(PPOConfig, {"lrr": 1}, "ppo")
    with pytest.raises(ConfigError, match=r"parameter 'ppo': PPOConfig\.batch_size \(10\) must be a multiple of mini"):
        parse_params(PPOConfig, {"batch_size": 10, "mini_batch_size": 4}, "ppo")
    for field, value in (("use_vllm", 1), ("batch_size", True), ("batch_size", 2.0), ("learning_rate", float("nan"))):
        with pytest.raises(ConfigError, match=rf"parameter 'ppo\.{field}': Input should be a (valid|finite)"):
            parse_params(PPOConfig, {field: value}, "ppo")
    cfg = parse_params(PPOConfig, {"learning_rate": 1, "batch_size": 4, "mini_batch_size": 2}, "ppo")
    assert cfg.learning_rate == 1.0 and cfg.micro_batch_size == 2 and cfg.num_mini_batches == 2  # an int is a number


def test_paper_lengths_of_sft_ppo_and_grpo_come_from_one_arithmetic(project_root):
    """conf/paper: ppo.max_new_tokens, grpo.max_completion_length and sft.max_length = length_budget(synthesis.loop)."""
    from kedro.config import OmegaConfigLoader

    from r2_write.settings import CONFIG_LOADER_ARGS
    from r2_write.synthesis import SynthesisConfig
    from r2_write.training.length_budget import length_budget, longest_trajectory

    params = OmegaConfigLoader(str(project_root / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "paper"})["parameters"]
    synthesis = parse_params(SynthesisConfig, params["synthesis"]["loop"], "synthesis.loop")
    budget = length_budget(synthesis, params["ppo"]["max_prompt_length"])
    assert budget.response == longest_trajectory(synthesis) == 25088  # 1024 + 4096 + 3 x 5120 + 4096 + 512
    assert params["ppo"]["max_new_tokens"] == budget.ppo_max_new_tokens
    assert params["grpo"]["max_completion_length"] == budget.grpo_max_completion_length  # GRPO cut where PPO is
    assert params["sft"]["max_length"] == budget.sft_max_length == 2048 + 25088
    # one more reflection round would need 5120 more tokens everywhere
    longer = synthesis.model_copy(update={"max_rounds": 4})
    assert length_budget(longer, 2048).sft_max_length - budget.sft_max_length == 1024 + 4096
