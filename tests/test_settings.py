"""Configuration loading as `kedro run` does it: conf/<env> and --params change single leaves."""

import shutil

import pytest
from kedro.config import OmegaConfigLoader

from r2_write.settings import CONFIG_LOADER_ARGS


def _params(conf, env, runtime=None) -> dict:
    return OmegaConfigLoader(str(conf), **{**CONFIG_LOADER_ARGS, "default_run_env": env}, runtime_params=runtime)["parameters"]


@pytest.fixture
def conf(project_root, tmp_path):
    shutil.copytree(project_root / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("credentials.yml"))
    (tmp_path / "conf" / "local" / "parameters_mine.yml").write_text("judge:\n  max_attempts: 7\n")
    return tmp_path / "conf"


def test_a_nested_runtime_param_keeps_its_siblings_when_the_env_has_parameters(conf):
    base = _params(conf, "local")
    params = _params(conf, "local", {"evaluation": {"writingbench": {"num_queries": 1}}})
    assert params["evaluation"]["writingbench"]["num_queries"] == 1
    assert params["evaluation"]["writingbench"]["max_query_chars"] == base["evaluation"]["writingbench"]["max_query_chars"] == 600
    assert params["evaluation"]["deepresearchgym"] == base["evaluation"]["deepresearchgym"]
    assert params["judge"]["max_attempts"] == 7 and params["judge"]["mode"] == base["judge"]["mode"]


def test_paper_env_with_the_outcome_only_override(conf):
    base, paper = _params(conf, "base"), _params(conf, "paper", {"ppo": {"process_weight": 0}})
    assert paper["ppo"]["process_weight"] == 0
    assert paper["ppo"]["learning_rate"] == 1e-6 and paper["ppo"]["kl_coef"] == 0.001  # the paper's values stay
    assert set(paper["ppo"]) >= set(base["ppo"])  # nothing from base was dropped


@pytest.mark.parametrize("env", ["base", "paper"])
def test_every_stage_accepts_the_merged_parameters_of_each_env(conf, env):
    """What each node validates at start, checked for the whole env at once (a typo fails here)."""
    from r2_write.config import parse_params
    from r2_write.judge.judge import JudgeConfig
    from r2_write.llm.config import LLMConfig
    from r2_write.pipelines.evaluation.nodes import EvaluationParams
    from r2_write.pipelines.filtering.nodes import FilteringParams
    from r2_write.pipelines.ppo.nodes import ablation_params
    from r2_write.pipelines.rubrics.nodes import PoolParams, RubricsParams
    from r2_write.pipelines.scoring.nodes import ScoringParams
    from r2_write.pipelines.synthesis.nodes import SynthesisParams
    from r2_write.rewards.process import ProcessRewardConfig
    from r2_write.rl.ppo_config import PPOConfig
    from r2_write.training.grpo import GRPOParams
    from r2_write.training.launch import parse_launch
    from r2_write.training.sft import SFTParams

    params = _params(conf, env)
    checked = []
    for role, cfg in params["llm"].items():
        _assert_kept(parse_params(LLMConfig, cfg, f"llm.{role}"), cfg, f"llm.{role}")
        checked.append(f"llm.{role}")
    for model, key in [(JudgeConfig, "judge"), (PoolParams, "prompt_pools"), (RubricsParams, "rubrics"),
                       (SynthesisParams, "synthesis"), (FilteringParams, "filtering"), (ScoringParams, "scoring"),
                       (SFTParams, "sft"), (GRPOParams, "grpo"), (EvaluationParams, "evaluation")]:
        section = dict(params[key])
        if key in ("sft", "grpo"):
            parse_launch(section.pop("launch", None), f"{key}.launch")
        _assert_kept(parse_params(model, section, key), section, key)
        checked.append(key)
    for variant, ppo in (("ppo", params["ppo"]), ("ppo_outcome", ablation_params(params["ppo"], params["ppo_outcome"]))):
        ppo = dict(ppo)
        parse_launch(ppo.pop("launch", None), f"{variant}.launch")
        reward = ppo.pop("reward", {})
        _assert_kept(parse_params(ProcessRewardConfig, reward, f"{variant}.reward"), reward, f"{variant}.reward")
        _assert_kept(parse_params(PPOConfig, ppo, variant), ppo, variant)
        checked.append(variant)
    assert {"llm.policy", "llm.judge", "ppo", "ppo_outcome", "evaluation"} <= set(checked)


def _assert_kept(parsed, section: dict, where: str) -> None:
    """Every YAML key of ``section`` is a field of the parsed model, and its scalar values arrive unchanged."""
    dumped = parsed.model_dump()
    for key, value in section.items():
        assert key in dumped, f"{where}.{key} is in the YAML but not in {type(parsed).__name__}"
        if isinstance(value, (bool, int, float, str)):
            assert dumped[key] == value, f"{where}.{key}: YAML {value!r}, parsed {dumped[key]!r}"


@pytest.mark.parametrize("env", ["base", "paper"])
def test_the_ablation_differs_from_ppo_in_lambda_alone(conf, env):
    """``--params ppo.*`` reaches ppo_outcome too; only lambda differs (and what ppo_outcome names itself)."""
    from r2_write.config import ConfigError
    from r2_write.pipelines.ppo.nodes import ablation_params

    params = _params(conf, env, {"ppo": {"learning_rate": 3e-5, "reward": {"min_gain": 0.5}}})
    ablation = ablation_params(params["ppo"], params["ppo_outcome"])
    assert params["ppo"]["process_weight"] > 0 and ablation["process_weight"] == 0
    assert {**ablation, "process_weight": params["ppo"]["process_weight"]} == params["ppo"]
    assert ablation["learning_rate"] == 3e-5 and ablation["reward"]["min_gain"] == 0.5
    seeded = _params(conf, env, {"ppo_outcome": {"seed": 7}})
    assert ablation_params(seeded["ppo"], seeded["ppo_outcome"])["seed"] == 7 != seeded["ppo"]["seed"]
    with pytest.raises(ConfigError, match="ppo_outcome.process_weight"):
        ablation_params(params["ppo"], {"process_weight": 0.5})


@pytest.mark.parametrize("env", ["base", "paper"])
def test_the_effective_ablation_config_equals_ppos_but_lambda(conf, env):
    """What the two nodes build (PPOConfig and ProcessRewardConfig) after ``--params ppo.*``: equal but for lambda."""
    from r2_write.config import ConfigError, parse_params
    from r2_write.pipelines.ppo.nodes import ablation_params
    from r2_write.rewards.process import ProcessRewardConfig
    from r2_write.rl.ppo_config import PPOConfig
    from r2_write.training.launch import parse_launch

    def effective(section: dict, variant: str) -> tuple[dict, dict]:
        section = dict(section)
        parse_launch(section.pop("launch", None), f"{variant}.launch")
        reward = parse_params(ProcessRewardConfig, section.pop("reward", {}), f"{variant}.reward")
        return parse_params(PPOConfig, section, variant).model_dump(), reward.model_dump()

    params = _params(conf, env, {"ppo": {"learning_rate": 3e-5, "kl_coef": 0.01, "reward": {"step_cost": 0.01}}})
    ppo, ppo_reward = effective(params["ppo"], "ppo")
    outcome, outcome_reward = effective(ablation_params(params["ppo"], params["ppo_outcome"]), "ppo_outcome")
    assert ppo["process_weight"] > 0 and outcome["process_weight"] == 0
    assert {**outcome, "process_weight": ppo["process_weight"]} == ppo and outcome_reward == ppo_reward
    assert outcome["learning_rate"] == 3e-5 and outcome["kl_coef"] == 0.01 and outcome_reward["step_cost"] == 0.01
    for unknown in ({"learning_rat": 1e-5}, {"reward": {"process_weight": 0.5}}):  # unknown keys are rejected
        with pytest.raises(ConfigError, match="ppo_outcome"):
            effective(ablation_params(params["ppo"], unknown), "ppo_outcome")
