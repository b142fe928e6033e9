"""End-to-end smoke runs of the real CLI on the embedded model, in a temporary project copy.

The copy holds pyproject.toml, conf/, an empty src/ (the package is installed editable),
the raw prompts and a link to the embedded checkpoint; every run writes its data, cache
and MLflow store (sqlite:///mlflow.db) inside it. Sizes are tiny (one prompt per stage,
one round, a one-criterion rubric), so the whole module stays well under three minutes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability._project import kedro_env

pytestmark = pytest.mark.slow

KEDRO = str(Path(sys.executable).with_name("kedro"))
RUBRICS_PARAMS = "rubrics.num_prompts_per_pool=1,rubrics.writer.max_new_tokens=32,rubrics.writer.max_attempts=1"
SYNTHESIS_PARAMS = (
    "synthesis.num_prompts=1,synthesis.loop.max_rounds=1,synthesis.loop.draft_tokens=32,"
    "synthesis.loop.plan_tokens=16,synthesis.loop.reflection_tokens=16"
)
# conf/local of the copy: a one-criterion fallback rubric keeps the judge's forward passes few
LOCAL_PARAMETERS = """\
generic_rubric:
  - name: Task Fulfilment
    criteria_description: Does the response do what the request asks?
    "1-2": Ignores the request.
    "3-4": Addresses it only partly.
    "5-6": Addresses the main request.
    "7-8": Meets nearly all requirements.
    "9-10": Meets every requirement.
"""


def copy_project(root: Path, project_root: Path, model_dir: Path) -> Path:
    """A runnable copy of the project in ``root``: pyproject.toml, conf/ (an empty conf/local), an empty src/
    (the package is installed editable), the raw prompts and a link to the embedded checkpoint.
    Also used by benchmarks/stage_times.py."""
    shutil.copy(project_root / "pyproject.toml", root)
    shutil.copytree(project_root / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    (root / "data" / "01_raw").mkdir(parents=True)
    shutil.copy(project_root / "data" / "01_raw" / "prompts.jsonl", root / "data" / "01_raw")
    (root / "data" / "06_models").mkdir()
    (root / "data" / "06_models" / "base_model").symlink_to(Path(model_dir).resolve(), target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory, project_root, embedded_model_dir) -> Path:
    root = copy_project(tmp_path_factory.mktemp("project"), project_root, embedded_model_dir)
    (root / "conf" / "local" / "parameters_test.yml").write_text(LOCAL_PARAMETERS)
    return root


def kedro(project: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    proc = command(project, [KEDRO, *args], timeout)
    assert proc.returncode == 0, f"kedro {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def command(project: Path, argv: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``argv`` in the project copy with the test environment; the caller checks the result."""
    return subprocess.run(argv, cwd=project, env=kedro_env(), capture_output=True, text=True, timeout=timeout)


def mlflow_runs(project: Path) -> list:
    """Runs of the project's experiment, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("r2_write")
    assert experiment is not None, "no MLflow experiment 'r2_write' in the project's store"
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    return sorted(runs, key=lambda r: r.info.start_time)


def synthesis_runs(project: Path) -> list:
    return [r for r in mlflow_runs(project) if "synthesis/steps" in r.data.metrics]


@pytest.fixture(scope="module")
def first_runs(project) -> Path:
    kedro(project, "run", "--pipelines", "rubrics", "--params", RUBRICS_PARAMS)
    kedro(project, "run", "--pipelines", "synthesis", "--params", SYNTHESIS_PARAMS)
    return project


def _versions(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir())


def test_rubrics_then_synthesis(first_runs):
    import pandas as pd

    project = first_runs
    for rel in ("02_intermediate/prompts.parquet", "02_intermediate/rubrics/accepted.parquet", "03_primary/synthesis/trajectories.parquet", "03_primary/synthesis/steps.parquet"):
        folder = project / "data" / rel
        versions = _versions(folder)
        assert len(versions) == 1, f"{rel}: expected one version folder, got {versions}"
        assert (versions[0] / folder.name).is_file()

    (traj_file,) = (project / "data/03_primary/synthesis/trajectories.parquet").glob("*/trajectories.parquet")
    traj = pd.read_parquet(traj_file)
    assert len(traj) == 1 and traj["trajectory"].iloc[0].startswith("<think>")

    (run,) = synthesis_runs(project)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["synthesis/steps"] == 1.0
    assert run.data.metrics["synthesis/writer/calls"] > 0
    assert (project / "data" / "cache" / "llm_cache.sqlite").exists()


def test_rerun_makes_no_model_calls(first_runs):
    project = first_runs
    kedro(project, "run", "--pipelines", "synthesis", "--params", SYNTHESIS_PARAMS)
    first, second = synthesis_runs(project)
    assert second.info.status == "FINISHED"
    assert second.data.metrics["synthesis/writer/calls"] == 0
    assert second.data.metrics["synthesis/writer/cache_hits"] > 0
    assert second.data.metrics["synthesis/writer/cache_hits"] >= first.data.metrics["synthesis/writer/calls"]
    assert len(_versions(project / "data/03_primary/synthesis/trajectories.parquet")) == 2  # versioned, not overwritten


def test_viz_build_contains_synthesis_nodes(project):
    kedro(project, "viz", "build", timeout=180)
    main = project / "build" / "api" / "main"
    assert main.is_file(), f"no {main}: {sorted(p.name for p in (project / 'build').rglob('*'))[:20]}"
    graph = json.loads(main.read_text())
    by_name = {n["name"]: n for n in graph["nodes"]}
    for node in ("select_synthesis_prompts_node", "synthesize_trajectories_node", "extract_reflection_steps_node", "summarize_reflection_effects_node"):
        assert node in by_name, f"{node} missing from the viz build"
        assert by_name[node]["type"] == "task" and "synthesis" in by_name[node]["pipelines"]
    assert by_name["synthesis.trajectories"]["layer"] == "primary"


def test_python_m_r2_write_is_kedro_run(first_runs):
    """``python -m r2_write`` (what ``accelerate launch -m r2_write`` runs) is the project's ``kedro run``."""
    project = first_runs
    ok = command(project, [sys.executable, "-m", "r2_write", "--pipelines", "rubrics", "--params", RUBRICS_PARAMS])
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert len(_versions(project / "data/02_intermediate/rubrics/accepted.parquet")) == 2  # a second rubrics run
    bad = command(project, [sys.executable, "-m", "r2_write", "--pipelines", "rubrics", "--params",
                            "rubrics.num_prompts_per_pool=0"])
    out = bad.stdout + bad.stderr
    error = out[out.index("Error: ConfigError:"):]  # the message, without a traceback
    assert bad.returncode == 1 and "'rubrics.num_prompts_per_pool'" in error and "Traceback" not in out
