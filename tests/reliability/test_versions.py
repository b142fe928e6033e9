"""Dataset versions: runs never overwrite each other, a run can be pinned to an older
version with ``--load-versions``, and each MLflow run records the versions it read and wrote
(``dataset_version.<name>`` tags, from ``r2_write.hooks.DatasetVersionHooks``).
"""

from __future__ import annotations

import pytest

from tests.reliability._project import (
    JUDGE_MARKER,
    kedro_args,
    mlflow_runs,
    read_version,
    run_kedro,
    server_params,
    versions,
)

pytestmark = pytest.mark.slow
TRAJECTORIES, STEPS = "03_primary/synthesis/trajectories.parquet", "03_primary/synthesis/steps.parquet"


def _tags(run) -> dict[str, str]:
    return {k[len("dataset_version."):]: v for k, v in run.data.tags.items() if k.startswith("dataset_version.")}


def test_versions_are_kept_pinned_and_recorded(new_project, fault_server):
    project = new_project()
    server = fault_server(judge_marker=JUDGE_MARKER)
    params = {**server_params(server.base_url), "synthesis.loop.max_rounds": 1}

    run_kedro(project, kedro_args("rubrics,synthesis", {**params, "synthesis.num_prompts": 2}))
    run_kedro(project, kedro_args("synthesis", {**params, "synthesis.num_prompts": 1}))
    v1, v2 = versions(project, TRAJECTORIES)
    assert len(read_version(project, TRAJECTORIES, v1)) == 2 and len(read_version(project, TRAJECTORIES, v2)) == 1

    # a downstream step pinned to the first version
    run_kedro(project, kedro_args("synthesis", params, "--from-nodes", "extract_reflection_steps_node",
                                  "--load-versions", f"synthesis.trajectories:{v1}"))
    assert versions(project, TRAJECTORIES) == [v1, v2]  # nothing overwritten, nothing new
    steps_v1, steps_v2, steps_v3 = versions(project, STEPS)
    pinned = read_version(project, STEPS, steps_v3)
    assert set(pinned["id"]) == set(read_version(project, TRAJECTORIES, v1)["id"])
    assert pinned.equals(read_version(project, STEPS, steps_v1))

    first, second, third = mlflow_runs(project)
    (prompts_v1,) = versions(project, "02_intermediate/prompts.parquet")
    print(f"\nversions: trajectories {v1} (run 1), {v2} (run 2); run 3 pinned to {v1}; MLflow tags: "
          f"run 1 {_tags(first)}, run 2 {_tags(second)}, run 3 {_tags(third)}")
    assert _tags(first)["synthesis.trajectories"] == v1 and _tags(first)["prompts"] == prompts_v1
    assert _tags(second)["synthesis.trajectories"] == v2
    assert _tags(second)["prompts"] == prompts_v1  # loaded: the latest version, written by run 1
    assert _tags(third)["synthesis.trajectories"] == v1  # loaded: the pinned version
    assert _tags(third)["synthesis.steps"] == steps_v3
    assert "synthesis.inputs" not in _tags(third)  # not touched by the pinned run
