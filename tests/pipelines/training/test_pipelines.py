"""SFT, PPO and GRPO pipelines run by SequentialRunner on a tiny random Llama (real trainers, seconds)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from kedro.runner import SequentialRunner
from transformers import AutoModelForCausalLM

from r2_write.config import ConfigError
from r2_write.llm.base import FailureBudgetError
from r2_write.pipelines.grpo import create_pipeline as grpo_pipeline
from r2_write.pipelines.ppo import create_pipeline as ppo_pipeline
from r2_write.pipelines.ppo.nodes import train_ppo_policy
from r2_write.pipelines.ppo_outcome import create_pipeline as ppo_outcome_pipeline
from r2_write.pipelines.sft import create_pipeline as sft_pipeline
from r2_write.rubrics.schema import generic_rubric
from tests.pipelines.conftest import KeptMemoryDataset, memory_catalog


def _params_equal(a: str, b: str) -> bool:
    ma, mb = AutoModelForCausalLM.from_pretrained(a), AutoModelForCausalLM.from_pretrained(b)
    return all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))


def test_sft_pipeline_trains_and_saves_a_loadable_checkpoint(tiny_model_dir, tmp_path):
    sft_set = pd.DataFrame({"prompt": ["Write a haiku.", "Write a memo."],
                            "completion": ["<think>\n<plan>\np\n</plan>\n</think>\nA haiku.", "<think>\n</think>\nA memo."]})
    catalog = memory_catalog({"scoring.sft_set": sft_set, "base_model": tiny_model_dir,
                              "params:sft": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 128, "learning_rate": 1e-3,
                                             "save_steps": 1, "output_dir": str(tmp_path / "sft")}})
    SequentialRunner().run(sft_pipeline(), catalog)
    model_dir = catalog.load("sft.model")
    assert not _params_equal(model_dir, tiny_model_dir)  # the weights moved
    losses = catalog.load("sft_metrics")["sft/loss"]
    assert [m["step"] for m in losses] == [0, 1] and all(m["value"] > 0 for m in losses)
    assert not list((tmp_path / "sft" / "trainer").glob("checkpoint-*"))  # deleted once training finished


def test_sft_with_lora_merges_into_a_plain_checkpoint(tiny_model_dir, tmp_path):
    sft_set = pd.DataFrame({"prompt": ["Q"] * 2, "completion": ["<think>\n</think>\nA"] * 2})
    catalog = memory_catalog({"scoring.sft_set": sft_set, "base_model": tiny_model_dir,
                              "params:sft": {"max_steps": 1, "max_length": 64, "learning_rate": 1e-2, "lora": {"enabled": True, "r": 4, "alpha": 8},
                                             "output_dir": str(tmp_path)}})
    SequentialRunner().run(sft_pipeline(), catalog)
    cfg = json.loads(open(f"{catalog.load('sft.model')}/config.json").read())
    assert cfg["model_type"] == "llama"  # merged: loads without peft


# SFT trajectories short enough for PPO_TINY's 8-token budget (the length budget check passes)
SFT_SET = pd.DataFrame({"prompt": ["Write a haiku.", "Write a memo."], "completion": ["A haiku.", "A memo."]})


def _rl_set(project_params) -> pd.DataFrame:
    crit = json.dumps([c.to_row() for c in generic_rubric(project_params["generic_rubric"])])
    return pd.DataFrame({"id": ["r1", "r2"], "prompt": ["Plan a lesson on tides.", "Write an ad."], "criteria": [crit] * 2})


def _rl_catalog(tiny_model_dir, project_params, llm_params, variant, extra):
    return memory_catalog({
        "scoring.rl_set": _rl_set(project_params), "scoring.sft_set": SFT_SET, "sft.model": tiny_model_dir,
        f"params:{variant}": extra, "params:llm": llm_params,
        "params:judge": {**project_params["judge"], "mode": "generate"},
        "params:generic_rubric": project_params["generic_rubric"],
    }, keep=(f"{variant}.history",))


PPO_TINY = {"batch_size": 2, "mini_batch_size": 2, "max_new_tokens": 8, "total_steps": 2, "save_every": 1, "learning_rate": 1e-3}


@pytest.mark.parametrize("variant,pipe,weight,critic", [("ppo", ppo_pipeline, 0.5, "shared"),
                                                        ("ppo_outcome", ppo_outcome_pipeline, 0.0, "shared"),
                                                        ("ppo", ppo_pipeline, 0.5, "separate")])
def test_ppo_pipelines_share_metric_names(tmp_path, tiny_model_dir, project_params, llm_params, fake_llm, variant, pipe, weight,
                                          critic):
    params = {**PPO_TINY, "process_weight": 0.5, "critic": critic, "output_dir": str(tmp_path / variant)}
    catalog = _rl_catalog(tiny_model_dir, project_params, llm_params, "ppo", params)
    if variant == "ppo_outcome":  # derived from params:ppo; its own output_dir is the one override it names
        catalog["params:ppo_outcome"] = {"output_dir": str(tmp_path / variant)}
        catalog[f"{variant}.history"] = KeptMemoryDataset()
    SequentialRunner().run(pipe(), catalog)
    assert not _params_equal(catalog.load(f"{variant}.model"), tiny_model_dir)
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
    args = (_rl_set(project_params), long_set, tiny_model_dir)
    with pytest.raises(ConfigError, match=r"^ppo\.max_new_tokens=8 is shorter than the 95th percentile \(\d+ tokens\) of the SFT"):
        train_ppo_policy(*args, params, llm_params, project_params["judge"], project_params["generic_rubric"])
    with pytest.raises(ConfigError, match=r"ppo_outcome\.check_length_budget: false"):
        train_ppo_policy(*args, params, llm_params, project_params["judge"], project_params["generic_rubric"], variant="ppo_outcome")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # failed before training


def test_grpo_pipeline(tiny_model_dir, project_params, llm_params, fake_llm, tmp_path):
    params = {"max_steps": 1, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 8, "learning_rate": 1e-3,
              "save_steps": 1, "output_dir": str(tmp_path)}
    catalog = _rl_catalog(tiny_model_dir, project_params, llm_params, "grpo", params)
    SequentialRunner().run(grpo_pipeline(), catalog)
    assert (catalog.load("grpo.model"))
    metrics = catalog.load("grpo_metrics")
    assert "grpo/reward/mean" in metrics and "grpo/response/length_tokens" in metrics
    # 8 tokens cannot hold a trajectory: every completion is truncated, gets the format penalty, and is never judged
    assert fake_llm.backend.n_generated == 0
    assert [m["value"] for m in metrics["grpo/reward/mean"]] == [-1.0]
    assert (tmp_path / "final").exists() and not list((tmp_path / "trainer").glob("checkpoint-*"))


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
        train_ppo_policy(_rl_set(project_params), SFT_SET, tiny_model_dir, {**PPO_TINY, "output_dir": str(tmp_path)},
                         llm_params, judge, project_params["generic_rubric"])
