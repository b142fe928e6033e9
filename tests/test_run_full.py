"""End-to-end: the whole default ``kedro run`` (every stage) on the embedded model at tiny sizes.

What ``make run`` does, shrunk to one prompt per stage and one training step per trainer:
rubrics -> synthesis -> filtering -> scoring -> SFT -> PPO (process and outcome-only) -> GRPO
-> evaluation of all five variants -> comparison table, in one MLflow run.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.test_run import kedro, mlflow_runs, project  # noqa: F401  (project: fixture)

pytestmark = pytest.mark.slow

TINY = ",".join(
    [
        "rubrics.num_prompts_per_pool=1", "rubrics.writer.max_new_tokens=16", "rubrics.writer.max_attempts=1",
        "synthesis.num_prompts=1", "synthesis.loop.max_rounds=1", "synthesis.loop.plan_tokens=8",
        "synthesis.loop.draft_tokens=16", "synthesis.loop.reflection_tokens=8",
        "filtering.num_prompts=1", "filtering.k=2", "filtering.max_new_tokens=8",
        "filtering.rule.low=1", "filtering.rule.high=10", "filtering.rule.min_spread=0",
        "scoring.min_final_score=1", "scoring.require_improvement=false",
        "sft.max_steps=1", "sft.max_length=192", "sft.per_device_train_batch_size=1",
        # ppo.* reaches the ppo_outcome ablation too (derived from ppo in code)
        *[f"ppo.{k}" for k in ("total_steps=1", "batch_size=1", "mini_batch_size=1", "max_new_tokens=8", "save_every=0")],
        "grpo.max_steps=1", "grpo.per_device_train_batch_size=2", "grpo.num_generations=2", "grpo.max_completion_length=8",
        "evaluation.generation.max_new_tokens=16", "evaluation.writingbench.num_queries=1",  # 1 per file
        "evaluation.deepresearchgym.num_queries=1",
        "evaluation.deepresearchgym.max_key_points=2", "evaluation.deepresearchgym.max_new_tokens=16",
    ]
)
VARIANTS = ["base", "sft", "ppo", "ppo_outcome", "grpo"]


def _latest(path) -> pd.DataFrame:
    return pd.read_parquet(sorted(path.glob("*/*.parquet"))[-1])


@pytest.fixture(scope="module")
def full_run(project, project_root):  # noqa: F811
    benchmarks = (project_root / ".." / "shared" / "benchmarks").resolve()
    kedro(project, "run", "--params", f"{TINY},benchmarks_root={benchmarks}", timeout=900)
    return project


def test_full_default_run(full_run):
    project = full_run
    data = project / "data"
    for table in ("03_primary/synthesis/trajectories", "04_feature/filtering/kept", "05_model_input/scoring/sft_set",
                  "05_model_input/scoring/rl_set", "07_model_output/ppo/history"):
        assert len(_latest(data / f"{table}.parquet")) >= 1, table
    for variant in ("sft", "ppo", "ppo_outcome", "grpo"):
        assert list((data / "06_models" / variant).glob("*/*/config.json")), f"no {variant} checkpoint"
    comparison = _latest(data / "08_reporting/evaluation/comparison.parquet")
    assert sorted(comparison["variant"]) == sorted(VARIANTS)
    assert comparison["writingbench_overall"].between(10, 100).all()  # 1-10 judge scores x10, never 0

    runs = mlflow_runs(project)
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][-1]
    assert parent.info.status == "FINISHED"
    assert "synthesis/steps" in parent.data.metrics and "datasets/sft_examples" in parent.data.metrics
    assert "datasets/sft_steps_cut" in parent.data.metrics and "scoring/steps_cut" in parent.data.metrics
    stages = ("rubrics", "synthesis", "filtering", "scoring", "sft", "ppo", "ppo_outcome", "grpo", "evaluation")
    times = {k: v for k, v in parent.data.metrics.items() if k.startswith("time/")}  # StageTimingHooks
    assert set(times) == {f"time/{s}" for s in (*stages, "total")}
    assert all(v > 0 for v in times.values()) and times["time/total"] == pytest.approx(
        sum(times[f"time/{s}"] for s in stages), abs=0.05)
    assert parent.data.metrics["calls/rubrics"] > 0 and parent.data.metrics["calls/evaluation"] > 0
    nested = {r.data.tags.get("mlflow.runName") for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert {f"{stage}/{v}" for v in ("ppo", "ppo_outcome", "grpo") for stage in ("train", "eval")} | {"eval/base", "eval/sft"} == nested
    ppo_runs = [r for r in runs if r.data.tags.get("mlflow.runName") in ("train/ppo", "train/ppo_outcome")]
    assert len(ppo_runs) == 2
    assert len({frozenset(k for k in r.data.metrics if k.startswith(("reward/", "response/"))) for r in ppo_runs}) == 1
    for r in ppo_runs:  # 8 tokens cannot hold a trajectory: every rollout is truncated and penalised, never judged
        assert r.data.metrics["reward/format_violations"] == 1.0
        assert r.data.metrics["reward/mean"] < 0


def test_a_rerun_makes_no_model_call_and_trains_nothing(full_run, project_root):
    """The same ``kedro run`` again: every answer from the response cache, every model from its finished training."""
    benchmarks = (project_root / ".." / "shared" / "benchmarks").resolve()
    proc = kedro(full_run, "run", "--params", f"{TINY},benchmarks_root={benchmarks}", timeout=900)
    out = proc.stdout + proc.stderr
    for stage in ("sft", "ppo", "ppo_outcome", "grpo"):
        assert f"{stage}: reusing the model trained with the same inputs" in out
    parents = [r for r in mlflow_runs(full_run) if "mlflow.parentRunId" not in r.data.tags]
    first, rerun = (p.data.metrics for p in parents[-2:])
    assert rerun["calls/total"] == 0 and first["calls/total"] > 0
    assert rerun["time/total"] < 0.25 * first["time/total"]
    for stage in ("sft", "ppo", "ppo_outcome", "grpo"):  # the rerun's catalog versions add no weights to the disk
        first_v, rerun_v = sorted((full_run / "data" / "06_models" / stage).glob(f"*/{stage}"))[-2:]
        weights = sorted(p.relative_to(first_v) for p in first_v.rglob("*.safetensors"))
        assert weights and all((first_v / w).stat().st_ino == (rerun_v / w).stat().st_ino for w in weights)
    # two runs in a row stay within the catalog's retention, and every model byte is a stored training's
    from r2_write.catalog.model_directory import disk_usage, models_usage

    models = full_run / "data" / "06_models"
    usage = {u.stage: u for u in models_usage(models)}
    assert all(usage[s].versions <= 2 and usage[s].trained <= 2 for s in ("sft", "ppo", "ppo_outcome", "grpo")), usage
    extra = disk_usage(models) - disk_usage(models / "trained")  # versions are links; no final left in checkpoints/
    assert extra < 1_000_000, f"{extra} bytes of models outside the finished-training store"


def test_ppo_with_a_separate_critic_on_the_embedded_model(full_run):
    """``kedro run --pipelines ppo --params ppo.critic=separate`` from the default run's SFT model."""
    tiny_ppo = ",".join(p for p in TINY.split(",") if p.startswith("ppo."))
    kedro(full_run, "run", "--pipelines", "ppo", "--params", f"{tiny_ppo},ppo.critic=separate,ppo.critic_warmup_steps=0")
    finals = sorted((full_run / "data" / "06_models" / "ppo").glob("*/*/config.json"))
    assert len(finals) >= 2  # the default run's (and its rerun's) and this one's
    assert (finals[-1].parent / "critic").is_dir() and not any((f.parent / "critic").is_dir() for f in finals[:-1])
