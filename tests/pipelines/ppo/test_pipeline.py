"""The PPO pipelines (ppo and its outcome-only ablation ppo_outcome) run by SequentialRunner on a tiny random Llama."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from r2_write.config import ConfigError
from r2_write.llm.base import FailureBudgetError
from r2_write.pipelines.ppo import create_pipeline as ppo_pipeline
from r2_write.pipelines.ppo.nodes import train_ppo_policy
from r2_write.pipelines.ppo_outcome import create_pipeline as ppo_outcome_pipeline
from tests.pipelines.conftest import KeptMemoryDataset
from tests.pipelines.training_inputs import PPO_TINY, SFT_SET, rl_catalog, rl_set, weights_equal


@pytest.mark.parametrize("variant,pipe,weight,critic", [("ppo", ppo_pipeline, 0.5, "shared"),
                                                        ("ppo_outcome", ppo_outcome_pipeline, 0.0, "shared"),
                                                        ("ppo", ppo_pipeline, 0.5, "separate")])
def test_ppo_pipelines_share_metric_names(tmp_path, tiny_model_dir, project_params, llm_params, fake_llm, variant, pipe, weight,
                                          critic):
    params = {**PPO_TINY, "process_weight": 0.5, "critic": critic, "output_dir": str(tmp_path / variant)}
    catalog = rl_catalog(tiny_model_dir, project_params, llm_params, "ppo", params)
    if variant == "ppo_outcome":  # derived from params:ppo; its own output_dir is the one override it names
        catalog["params:ppo_outcome"] = {"output_dir": str(tmp_path / variant)}
        catalog[f"{variant}.history"] = KeptMemoryDataset()
    SequentialRunner().run(pipe(), catalog)
    assert not weights_equal(catalog.load(f"{variant}.model"), tiny_model_dir)
    history = catalog.load(f"{variant}.history")
    assert len(history) == 2 and set(history["variant"]) == {variant}
    metrics = catalog.load(f"{variant}_metrics")
    # the tiny random model's 8-token rollouts are all truncated, so never judged: reward/outcome is NaN (not logged)
    for name in ("reward/mean", "reward/format_violations", "reward/process", "response/length_tokens",
                 "response/reflections", "objective/kl", "losses/entropy", "losses/value_loss", "losses/clipfrac"):
        assert len(metrics[f"{variant}/{name}"]) == 2, name
    assert sorted(p.name for p in (tmp_path / variant).iterdir()) == ["final"]  # checkpoints deleted when done
    assert (tmp_path / variant / "final" / "critic").is_dir() == (critic == "separate")
    assert catalog.load(f"{variant}_curves").axes[0].get_title() == "Reward"


def test_ppo_max_new_tokens_must_fit_the_sft_trajectories(tiny_model_dir, project_params, llm_params, tmp_path):
    long_set = pd.DataFrame({"prompt": ["Q"] * 3, "completion": ["<think>\n<draft>\n" + "word " * 60 + "\n</draft>\n</think>\nA"] * 3})
    params = {**PPO_TINY, "output_dir": str(tmp_path)}
    args = (rl_set(project_params), long_set, tiny_model_dir)
    with pytest.raises(ConfigError, match=r"^ppo\.max_new_tokens=8 is shorter than the 95th percentile \(\d+ tokens\) of the SFT"):
        train_ppo_policy(*args, params, llm_params, project_params["judge"], project_params["generic_rubric"])
    with pytest.raises(ConfigError, match=r"ppo_outcome\.check_length_budget: false"):
        train_ppo_policy(*args, params, llm_params, project_params["judge"], project_params["generic_rubric"], variant="ppo_outcome")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # failed before training


def test_ppo_node_fails_when_the_reward_judge_never_scores(monkeypatch, tiny_model_dir, project_params, llm_params, tmp_path):
    """Rewards imputed for every judged text are not a run with a judge: the node fails in one line."""
    from tests.fakes import FakeBackend, make_client

    client = make_client(FakeBackend(respond=lambda conv, sampling: "no JSON here"))
    monkeypatch.setattr("r2_write.roles.get_client", lambda cfg, **kw: client)
    completion = "<think>\n<draft>\nA lesson on tides.\n</draft>\n</think>\nA lesson on tides."

    def one_reward_call(policy_dir, prompts, reward_fn, cfg, rubrics=None, **kw):
        reward_fn(prompts, [completion] * len(prompts), rubrics=rubrics)
        return {"history": [], "final_dir": str(tmp_path)}

    monkeypatch.setattr("r2_write.pipelines.ppo.nodes.train", one_reward_call)
    judge = {**project_params["judge"], "mode": "generate", "max_attempts": 1}
    with pytest.raises(FailureBudgetError, match=r"reward judgements unscored"):
        train_ppo_policy(rl_set(project_params), SFT_SET, tiny_model_dir, {**PPO_TINY, "output_dir": str(tmp_path)},
                         llm_params, judge, project_params["generic_rubric"])



def test_a_rerun_with_the_same_inputs_reuses_the_trained_policy(monkeypatch, tmp_path, tiny_model_dir, project_params, llm_params,
                                                                 fake_llm):
    """The second identical run does not train; a changed setting does (r2_write.training.reuse)."""
    params = {**PPO_TINY, "output_dir": str(tmp_path / "ppo")}
    first = train_ppo_policy(rl_set(project_params), SFT_SET, tiny_model_dir, params, llm_params, project_params["judge"],
                             project_params["generic_rubric"])

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("r2_write.pipelines.ppo.nodes.train", no_training)
    again = train_ppo_policy(rl_set(project_params), SFT_SET, tiny_model_dir, params, llm_params, project_params["judge"],
                             project_params["generic_rubric"])
    assert again[0] == first[0] and weights_equal(again[0], first[0])
    pd.testing.assert_frame_equal(again[1], first[1])
    assert again[2].keys() == first[2].keys() and len(again[2]["ppo/reward/mean"]) == 2
    with pytest.raises(AssertionError, match="trained again"):
        train_ppo_policy(rl_set(project_params), SFT_SET, tiny_model_dir, {**params, "learning_rate": 2e-3}, llm_params,
                         project_params["judge"], project_params["generic_rubric"])
