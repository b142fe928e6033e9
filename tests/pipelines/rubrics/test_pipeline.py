"""Rubrics pipeline run by SequentialRunner on an in-memory catalog."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from r2_write.llm.client import LLMClient
from r2_write.pipelines.rubrics import create_pipeline
from tests.pipelines.conftest import memory_catalog


def _catalog(raw, llm, rubrics, pools=None) -> DataCatalog:
    params = {"params:prompt_pools": pools or {"rl_fraction": 0.5, "seed": 0}, "params:rubrics": rubrics, "params:llm": llm}
    return memory_catalog({"raw_prompts": raw, **params}, keep=("prompts",))


def test_pipeline_wiring():
    pipe = create_pipeline()
    assert {n.name for n in pipe.nodes} == {"prepare_prompts_node", "write_instance_rubrics_node"}
    assert all("rubrics" in n.tags for n in pipe.nodes)
    assert pipe.inputs() == {"raw_prompts", "params:prompt_pools", "params:rubrics", "params:llm"}


def test_rubrics_pipeline_runs(dummy_prompts, fake_llm, llm_params):
    catalog = _catalog(dummy_prompts, llm_params, {"num_prompts_per_pool": 1, "writer": {"n_criteria": 3}})
    SequentialRunner().run(create_pipeline(), catalog)
    prompts = catalog.load("prompts")
    accepted, rejected = catalog.load("rubrics.accepted"), catalog.load("rubrics.rejected")
    per_pool = prompts.groupby("pool").head(1)
    assert set(accepted["id"]) == set(per_pool["id"]) and rejected.empty
    assert catalog.load("rubrics_metrics")["rubrics/accepted"]["value"] == float(len(per_pool))


def test_rubrics_pipeline_slice(dummy_prompts):
    pipe = create_pipeline().to_nodes("prepare_prompts_node")
    catalog = _catalog(dummy_prompts, {}, {})
    SequentialRunner().run(pipe, catalog)
    assert list(catalog.load("prompts")["id"]) == ["p1", "p2", "p3"]


@pytest.mark.slow
def test_rubrics_pipeline_embedded_model(dummy_prompts, embedded_client, monkeypatch, llm_params):
    made = []  # the rubric writer's client: the role's settings over the embedded model

    def get_client(cfg, role=None):
        made.append(LLMClient(cfg, backend=embedded_client.backend, role=role))
        return made[-1]

    monkeypatch.setattr("r2_write.roles.get_client", get_client)
    rubrics = {"num_prompts_per_pool": 1, "writer": {"max_new_tokens": 24, "max_attempts": 1}}
    # a 135M model rarely writes a valid rubric: allow the generic fallback, as conf/base does
    llm = {**llm_params, "rubric_writer": {**llm_params["rubric_writer"], "max_failed_share": 1.0}}
    catalog = _catalog(dummy_prompts.iloc[:1], llm, rubrics)
    SequentialRunner().run(create_pipeline(), catalog)
    accepted, rejected = catalog.load("rubrics.accepted"), catalog.load("rubrics.rejected")
    assert len(accepted) + len(rejected) == 1
    assert rejected.empty or rejected["reason"].str.len().gt(0).all()
    assert [c.role for c in made] == ["rubric_writer"] and made[0].stats.calls == 1
