"""Project hooks outside a kedro run: stage timing and model calls into MLflow (``time/<pipeline>``, ``calls/<pipeline>``)."""

from __future__ import annotations

import logging
import time

import mlflow
import pytest
from kedro.pipeline import Pipeline, node

from r2_write.hooks import StageTimingHooks
from r2_write.llm.client import PROCESS_CALLS


def _identity(x):
    return x


@pytest.fixture
def registry(monkeypatch):
    import kedro.framework.project as project

    a, b, c = (node(_identity, f"in_{n}", f"out_{n}", name=n) for n in ("a", "b", "c"))
    pipelines = {"synthesis": Pipeline([a]), "scoring": Pipeline([b, c])}
    monkeypatch.setattr(project, "pipelines", {**pipelines, "__default__": Pipeline([a, b, c])})
    return a, b, c


def _run(hooks: StageTimingHooks, nodes, seconds: dict[str, float], calls: dict[str, int] | None = None) -> None:
    hooks.before_pipeline_run()
    for n in nodes:
        hooks.before_node_run(node=n)
        time.sleep(seconds[n.name])
        PROCESS_CALLS["calls"] += (calls or {}).get(n.name, 0)  # what the node's LLM clients count
        PROCESS_CALLS["cache_hits"] += 1
        hooks.after_node_run(node=n)
    hooks.after_pipeline_run()


def test_stage_times_go_to_the_active_mlflow_run(registry, tmp_path, caplog):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    hooks = StageTimingHooks()
    with caplog.at_level(logging.INFO, logger="r2_write.hooks"), mlflow.start_run() as run:
        _run(hooks, registry, {"a": 0.05, "b": 0.02, "c": 0.03}, calls={"a": 7, "c": 2})
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    assert set(metrics) == {"time/synthesis", "time/scoring", "time/total", "calls/synthesis", "calls/scoring", "calls/total",
                            "cache_hits/synthesis", "cache_hits/scoring"}
    assert (metrics["calls/synthesis"], metrics["calls/scoring"], metrics["calls/total"]) == (7, 2, 9)
    assert (metrics["cache_hits/synthesis"], metrics["cache_hits/scoring"]) == (1, 2)
    assert 0.05 <= metrics["time/synthesis"] < 1 and 0.05 <= metrics["time/scoring"] < 1  # b + c summed
    assert metrics["time/total"] == pytest.approx(metrics["time/synthesis"] + metrics["time/scoring"], abs=2e-3)
    assert "time by stage" in caplog.text and "synthesis" in caplog.text and "(7 model calls)" in caplog.text


def test_without_an_mlflow_run_times_are_kept_and_nothing_is_logged(registry, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    hooks = StageTimingHooks()
    _run(hooks, registry, {"a": 0.0, "b": 0.0, "c": 0.0})
    assert set(hooks.seconds) == {"synthesis", "scoring"}
    assert mlflow.search_runs(search_all_experiments=True).empty
