"""notebooks/compare_runs.ipynb runs top to bottom on a temporary copy of the project.

The test builds comparison tables with the compare node from hand-made variant summaries,
saves two versions through the Kedro catalog of the copy (versioned parquet, as real runs
would), logs one nested MLflow run per variant into the copy's own tracking store, then
executes the notebook with ``R2_PROJECT_PATH`` pointing at the copy.
"""

from __future__ import annotations

import re
import shutil

import mlflow
import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from r2_write.evaluation.compare import log_variant_run
from r2_write.pipelines.evaluation.nodes import compare_variants
from r2_write.tracking import NestedRunLogger

pytestmark = pytest.mark.slow  # starts a Jupyter kernel and an MLflow store: ~25 s on 2 CPU cores


@pytest.fixture
def project_copy(project_root, tmp_path):
    dst = tmp_path / "project"
    dst.mkdir()
    shutil.copy(project_root / "pyproject.toml", dst)
    shutil.copytree(project_root / "conf", dst / "conf", ignore=shutil.ignore_patterns("credentials.yml"))
    (dst / "src").mkdir()  # r2_write itself is imported from the installed (editable) package
    return dst


@pytest.fixture
def restore_mlflow():
    before = mlflow.get_tracking_uri()
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(before)


def _summary(variant: str, wb: float, kpr: float) -> pd.DataFrame:
    row = {"variant": variant, "writingbench_overall": wb, "kpr": kpr, "kpc": 3.0, "quality_overall": 40.0,
           "response_tokens": 120.0, "reflections_per_response": 1.5}
    return pd.DataFrame([row])


def _save_comparison(project, table: pd.DataFrame) -> str:
    from kedro.framework.session import KedroSession

    with KedroSession.create(project_path=project) as session:  # a new session: a new save version
        context = session.load_context()
        context.catalog.save("evaluation.comparison", table)
        return context.mlflow.tracking.experiment.name


def _outputs(nb, cell: int | None = None) -> list[str]:
    cells = [nb.cells[cell]] if cell is not None else [c for c in nb.cells if c.cell_type == "code"]
    texts = []
    for c in cells:
        for o in c.get("outputs", []):
            data = o.get("data", {})
            texts.append(re.sub(r"\x1b\[[0-9;]*m", "", o.get("text", "") + str(data.get("text/plain", "")) + str(data.get("text/markdown", ""))))
    return texts


def test_notebook_loads_latest_table_and_mlflow_runs(project_root, project_copy, restore_mlflow, monkeypatch):
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_copy)
    old, *_ = compare_variants(_summary("base", 11.0, 1.0), _summary("ppo", 12.0, 2.0))
    _save_comparison(project_copy, old)
    table, *_ = compare_variants(_summary("base", 61.0, 40.0), _summary("ppo", 74.5, 52.0))
    experiment = _save_comparison(project_copy, table)
    assert len(list((project_copy / "data/08_reporting/evaluation/comparison.parquet").glob("*/comparison.parquet"))) == 2
    mlflow.set_tracking_uri(f"sqlite:///{project_copy / 'mlflow.db'}")  # the copy's store, never the real one
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="evaluation"):
        for variant, row in table.set_index("variant").iterrows():
            log_variant_run(variant, row.dropna().to_dict())
        with NestedRunLogger("ppo") as log:  # a later training run of a variant: not an evaluation
            log({"reward/mean": 0.5}, step=1)

    nb = nbformat.read(project_root / "notebooks" / "compare_runs.ipynb", as_version=4)
    monkeypatch.setenv("R2_PROJECT_PATH", str(project_copy))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(project_copy)}}).execute()

    text = "\n".join(_outputs(nb))
    assert "| ppo | 74.5 |" in text and "| ppo | 12.0 |" not in text  # the latest version's markdown table
    assert "2 variant run(s)" in text
    runs_cell = next(i for i, c in enumerate(nb.cells) if "variant run(s)" in "".join(_outputs(nb, i)))
    runs_table = "".join(_outputs(nb, runs_cell))
    assert "74.5" in runs_table and "52.0" in runs_table  # ppo's evaluation run, not its later training run
    assert not [t for t in _outputs(nb, 1) if " INFO " in t]  # no log flood from Kedro start-up
    pngs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2  # the comparison chart and the MLflow chart
