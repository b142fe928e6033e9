"""Two ``kedro run``s at once in one project folder (two terminals, a sweep): supported.

Both runs start in the same instant, share the SQLite response cache and the MLflow store,
and write the same datasets. Both must finish; each writes its own dataset versions and its
own MLflow run, tagged with those versions; and every answer the endpoint gave either run is
in the cache (none lost to the other run's writes).
"""

from __future__ import annotations

import subprocess

from r2_write.llm.cache import cache_key
from tests.reliability._project import (
    JUDGE_MARKER,
    cache_keys,
    kedro_args,
    kedro_env,
    mlflow_runs,
    server_params,
    versions,
)

PROMPTS_PER_POOL = 8  # 16 rubric-writer requests per run


def _answered_keys(server) -> set[str]:
    """The cache key of every request the server answered (as the client computes it)."""
    keys = set()
    for r in server.recorded:
        if r["outcome"] != "ok":
            continue
        body = r["body"]
        sampling = {"temperature": body["temperature"], "top_p": body["top_p"], "max_new_tokens": body["max_tokens"],
                    "seed": body["seed"]}
        keys.add(cache_key(kind="chat", backend="openai", model=body["model"], messages=body["messages"],
                           sampling=sampling))
    return keys


def test_two_concurrent_runs_share_cache_and_mlflow_store(new_project, fault_server):
    project = new_project()
    server = fault_server(latency_s=0.2, judge_marker=JUDGE_MARKER, record=True)
    # different seeds: each run asks its own questions, so both runs' answers must be in the cache
    runs = [{**server_params(server.base_url), "rubrics.num_prompts_per_pool": PROMPTS_PER_POOL,
             "rubrics.writer.seed": seed} for seed in (1, 2)]
    procs = [subprocess.Popen(kedro_args("rubrics", params), cwd=project, env=kedro_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for params in runs]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=240)
        finally:
            proc.kill()
        results.append((proc.returncode, out, err))
    for rc, out, err in results:
        assert rc == 0, f"a concurrent run failed ({rc}):\n{out[-2000:]}\n{err[-3000:]}"

    accepted = versions(project, "02_intermediate/rubrics/accepted.parquet")
    assert len(accepted) == 2  # two version folders, nothing overwritten
    mlruns = mlflow_runs(project)
    assert [r.info.status for r in mlruns] == ["FINISHED", "FINISHED"]
    tagged = sorted(r.data.tags["dataset_version.rubrics.accepted"] for r in mlruns)
    assert tagged == accepted  # each run's tag names the version it wrote

    answered = _answered_keys(server)
    in_cache = cache_keys(project)
    print(f"\ntwo concurrent runs: both exit 0; versions {accepted}; {server.requests} requests, "
          f"{len(answered)} distinct answers, {len(answered & in_cache)} of them in the cache")
    assert len(answered) == 2 * 2 * PROMPTS_PER_POOL
    assert answered <= in_cache  # no answer lost
