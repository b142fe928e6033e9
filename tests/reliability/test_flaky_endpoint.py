"""A flaky endpoint: synthesis + judge through a FaultServer failing 30% of requests.

Faults are drawn over 429 (with Retry-After), 500, 503, timeouts, truncated bodies, non-JSON
bodies and malformed judge answers. Whatever the faults, every prompt ends either in the
trajectories or in the failures with its last error, no criterion is ever scored 0 (an
unscored criterion is None and counted), and the counts add up.
"""

from __future__ import annotations

import math

import pytest

from r2_write.data_io import load_prompts
from r2_write.judge.judge import JudgeConfig, RubricJudge
from r2_write.llm.client import LLMClient
from r2_write.llm.config import LLMConfig
from r2_write.rubrics.schema import generic_rubric
from r2_write.synthesis import SynthesisConfig, synthesize
from tests.llm.fault_server import FAULTS
from tests.reliability._project import JUDGE_MARKER, mlflow_runs, read_version

N_PROMPTS = 16


def _client(base_url: str) -> LLMClient:
    cfg = LLMConfig(backend="openai", base_url=base_url, model="fake-model", max_concurrency=8, max_retries=1,
                    timeout_s=0.5, backoff_base_s=0.01, backoff_max_s=0.1, cache_path=None)
    return LLMClient(cfg)


def test_synthesis_through_a_flaky_endpoint(fault_server, project_root, project_params):
    server = fault_server(latency_s=0.01, fault_rate=0.3, seed=3, judge_marker=JUDGE_MARKER, retry_after_s=0.05,
                          hang_s=1.0)
    criteria = generic_rubric(project_params["generic_rubric"])
    rows = load_prompts(project_root / "data" / "01_raw" / "prompts.jsonl").head(N_PROMPTS)
    prompts = [{"id": r.id, "prompt": r.prompt, "criteria": criteria} for r in rows.itertuples()]
    writer, judge_client = _client(server.base_url), _client(server.base_url)
    judge = RubricJudge(judge_client, JudgeConfig(mode="generate", max_attempts=2, max_new_tokens=16))
    verdicts, score = [], judge.score

    def keep_verdicts(items):
        out = score(items)
        verdicts.extend(out)
        return out

    judge.score = keep_verdicts  # every criterion's verdict, to check none is 0

    records = synthesize(prompts, writer, judge, SynthesisConfig(max_rounds=1, plan_tokens=16, draft_tokens=24,
                                                                 reflection_tokens=16))

    done = [r for r in records if r["error"] is None]
    failed = [r for r in records if r["error"] is not None]
    unscored = sum(v.score is None for v in verdicts)
    print(f"\nflaky endpoint (30% faults): {server.requests} requests made, {server.completed} completed, "
          f"faults {dict(sorted(server.faults.items()))}; {len(prompts)} prompts: {len(done)} done, "
          f"{len(failed)} failed (writer calls failed for good: {writer.stats.failures}); "
          f"judge: {len(verdicts)} criteria, {unscored} unscored, {judge.stats.parse_failures} malformed answers, "
          f"{judge_client.stats.failures} calls failed for good; rows lost: "
          f"{len(prompts) - len(done) - len(failed)}")

    # every row is done or failed with its last error: nothing dropped, nothing twice
    assert sorted(r["id"] for r in records) == sorted(p["id"] for p in prompts)
    assert all(r["error"] and r["stop_reason"] == "writer_failed" for r in failed)
    # a failed writer call stops its row (a row whose plan failed is still drafted: <= 2 per row)
    assert len(failed) <= writer.stats.failures <= 2 * len(failed)
    # no criterion scored 0: a score is an integer 1-10 or None, and the Nones are counted
    assert all(v.score is None or (1 <= v.score <= 10 and v.score == int(v.score)) for v in verdicts)
    assert unscored == judge.stats.failed_items == len(judge.stats.errors)
    assert sum(r["judge_failures"] for r in done) <= unscored
    for r in done:
        assert all(math.isnan(s) or 1 <= s <= 10 for s in r["version_scores"])
        assert r["first_score"] is None or r["first_score"] >= 1
    # the counts add up: every request either completed or got exactly one fault
    assert server.requests == server.completed + sum(n for k, n in server.faults.items() if k != "bad_judge")
    assert set(server.faults) == set(FAULTS), server.faults  # every kind was injected
    assert judge.stats.parse_failures >= server.faults["bad_judge"] > 0
    assert writer.stats.calls + judge_client.stats.calls < server.requests  # retries happened
    assert done and failed  # with one retry, 30% faults fail some rows for good, not all


@pytest.mark.slow
def test_kedro_run_through_a_flaky_endpoint(flaky_kedro_run):
    run = flaky_kedro_run
    inputs = read_version(run.project, "03_primary/synthesis/inputs.parquet")
    done = read_version(run.project, "03_primary/synthesis/trajectories.parquet")
    failed = read_version(run.project, "03_primary/synthesis/failures.parquet")
    (mlrun,) = [r for r in mlflow_runs(run.project) if "synthesis/prompts" in r.data.metrics]
    metrics = mlrun.data.metrics
    print(f"\nkedro run through a flaky endpoint: {run.requests} requests made, {run.completed} completed, "
          f"faults {dict(sorted(run.faults.items()))}; {len(inputs)} prompts: {len(done)} done, {len(failed)} failed; "
          + ", ".join(f"{k}={metrics[k]:g}" for k in sorted(metrics) if k.startswith("synthesis/")
                      and k.rsplit("/", 1)[-1] in ("calls", "failures", "parse_failures", "failed_items")))

    assert sorted(done["id"].tolist() + failed["id"].tolist()) == sorted(inputs["id"])
    assert failed["error"].map(bool).all()
    assert mlrun.info.status == "FINISHED"
    for name in ("synthesis/writer/failures", "synthesis/judge/parse_failures", "synthesis/judge/failed_items",
                 "synthesis/failed_prompts"):
        assert name in metrics, f"{name} missing from the MLflow run: {sorted(metrics)}"
    assert metrics["synthesis/failed_prompts"] == len(failed)
    assert run.requests > run.completed
