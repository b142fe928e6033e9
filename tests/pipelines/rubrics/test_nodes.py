"""Rubrics nodes on 3-row fixtures (fake rubric writer)."""

from __future__ import annotations

import json

import pytest

from r2_write.config import ConfigError
from r2_write.data_io import InputDataError
from r2_write.pipelines.rubrics.nodes import prepare_prompts, write_instance_rubrics
from r2_write.rubrics.schema import Criterion
from tests.fakes import default_respond, user_text


@pytest.fixture
def rubrics_params() -> dict:
    return {"num_prompts_per_pool": None, "writer": {"n_criteria": 2, "max_attempts": 2, "max_new_tokens": 64}}


def test_prepare_prompts_assigns_stable_disjoint_pools(dummy_prompts):
    out = prepare_prompts(dummy_prompts, {"rl_fraction": 0.5, "seed": 0})
    assert list(out["id"]) == ["p1", "p2", "p3"]
    assert set(out["pool"]) <= {"sft", "rl"}
    again = prepare_prompts(dummy_prompts.iloc[::-1], {"rl_fraction": 0.5, "seed": 0}).set_index("id")["pool"]
    assert again.to_dict() == out.set_index("id")["pool"].to_dict()  # a prompt's pool depends only on its id
    assert set(prepare_prompts(dummy_prompts, {"rl_fraction": 0.0})["pool"]) == {"sft"}
    assert set(prepare_prompts(dummy_prompts, {"rl_fraction": 1.0})["pool"]) == {"rl"}


def test_prepare_prompts_rejects_duplicates(dummy_prompts):
    bad = dummy_prompts.copy()
    bad.loc[2, "id"] = "p1"
    with pytest.raises(InputDataError, match=r"raw_prompts row 3, field 'id': duplicate id"):
        prepare_prompts(bad, {})


def test_prepare_prompts_bad_params(dummy_prompts):
    with pytest.raises(ConfigError, match="prompt_pools.rl_fraction"):
        prepare_prompts(dummy_prompts, {"rl_fraction": 2})


def test_write_instance_rubrics(dummy_prompts, fake_llm, llm_params, rubrics_params):
    fake_llm.backend.respond = lambda conv, s: (
        "not json" if "Write a cost memo" in user_text(conv) else default_respond(conv, s)
    )
    fake_llm.cfg = fake_llm.cfg.model_copy(update={"max_failed_share": 0.5})  # 1 of 3 on the generic rubric: allowed
    prompts = prepare_prompts(dummy_prompts, {"rl_fraction": 0.0})
    accepted, rejected, metrics = write_instance_rubrics(prompts, rubrics_params, llm_params)
    assert list(accepted.columns) == ["id", "domain", "criteria", "attempts"]
    assert list(accepted["id"]) == ["p1", "p3"] and list(accepted["attempts"]) == [1, 1]
    crit = [Criterion.model_validate(c) for c in json.loads(accepted.loc[0, "criteria"])]
    assert len(crit) == 2
    assert rejected.to_dict("records") == [
        {"id": "p2", "domain": "Finance & Business", "reason": "no JSON list in the answer", "attempts": 2}
    ]
    assert metrics["rubrics/accepted"] == {"value": 2.0, "step": 0}
    assert metrics["rubrics/rejected"]["value"] == 1.0
    assert metrics["rubrics/llm/calls"]["value"] == 4.0  # 3 first attempts + 1 retry


def test_write_instance_rubrics_limits_per_pool(dummy_prompts, fake_llm, llm_params, rubrics_params):
    prompts = prepare_prompts(dummy_prompts, {"rl_fraction": 0.0})
    accepted, rejected, _ = write_instance_rubrics(prompts, {**rubrics_params, "num_prompts_per_pool": 1}, llm_params)
    assert list(accepted["id"]) == ["p1"] and rejected.empty
    assert list(rejected.columns) == ["id", "domain", "reason", "attempts"]


def test_write_instance_rubrics_bad_params(dummy_prompts, fake_llm, llm_params):
    prompts = prepare_prompts(dummy_prompts, {})
    with pytest.raises(ConfigError, match="rubrics.writer.n_criteria"):
        write_instance_rubrics(prompts, {"writer": {"n_criteria": 0}}, llm_params)

