"""Temporary project copies, `kedro` subprocesses and their outputs, for the reliability tests.

A copy holds pyproject.toml, conf/base, an empty conf/local and src/ (the package is
installed editable), the raw prompts, and an MLflow store whose tables already exist (a
fresh ``sqlite:///mlflow.db`` costs every run several seconds of migrations). Every role
is pointed at a :class:`~tests.llm.fault_server.FaultServer` through ``--params``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd

KEDRO = str(Path(sys.executable).with_name("kedro"))
ROLES = ("writer", "rubric_writer", "judge")
# every judge prompt asks for {"score": ...}; no writer prompt contains it
JUDGE_MARKER = '"score"'
# a recognisable API key, read by the roles from $R2_TEST_KEY (tests search for it everywhere)
SECRET_ENV, SECRET = "R2_TEST_KEY", "sk-r2w-SECRET-0123456789"
TINY = {
    "rubrics.num_prompts_per_pool": 1,
    "rubrics.writer.max_attempts": 1,
    "rubrics.writer.max_new_tokens": 32,
    "judge.mode": "generate",
    "judge.max_new_tokens": 16,
    "synthesis.loop.plan_tokens": 16,
    "synthesis.loop.draft_tokens": 24,
    "synthesis.loop.reflection_tokens": 16,
}


def make_template(root: Path, project_root: Path) -> Path:
    """Build the project copy every test copies again (``root`` must not exist)."""
    root.mkdir(parents=True)
    shutil.copy(project_root / "pyproject.toml", root)
    (root / "conf").mkdir()
    shutil.copytree(project_root / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    (root / "data" / "01_raw").mkdir(parents=True)
    shutil.copy(project_root / "data" / "01_raw" / "prompts.jsonl", root / "data" / "01_raw")
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").search_experiments()  # creates the tables
    return root


def copy_project(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def kedro_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """The environment of every `kedro` subprocess of the tests: offline, no telemetry.

    ``threads`` torch threads (one by default: two contended threads on a small shared CPU run
    several times slower); 0 leaves the caller's own setting, or torch's default.
    """
    pinned = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}
    return {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **pinned,
        "TOKENIZERS_PARALLELISM": "false",
        "MLFLOW_TRACKING_URI": "",  # the project's conf/base/mlflow.yml decides
        "COLUMNS": "200",
        **extra,
    }


def kedro_args(pipelines: str, params: dict, *extra: str) -> list[str]:
    return [KEDRO, "run", "--pipelines", pipelines, "--params", params_arg(params), *extra]


def params_arg(params: dict) -> str:
    """``--params`` text; values must not contain commas."""
    items = []
    for k, v in params.items():
        text = "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        assert "," not in text, f"--params value of {k} contains a comma: {text}"
        items.append(f"{k}={text}")
    return ",".join(items)


def server_params(base_url: str, model: str = "fake-model", **role_settings) -> dict:
    """Every role on ``base_url`` through the openai backend (plus ``role_settings`` for each)."""
    out: dict = {}
    for role in ROLES:
        out.update({f"llm.{role}.backend": "openai", f"llm.{role}.base_url": base_url, f"llm.{role}.model": model})
        out.update({f"llm.{role}.{k}": v for k, v in role_settings.items()})
    return {**out, **TINY}


def run_kedro(project: Path, args: list[str], *, env: dict | None = None, timeout: float = 240,
              check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=project, env=env or kedro_env(), capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{' '.join(args[1:])} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc


def versions(project: Path, rel: str) -> list[str]:
    """Version folder names of a versioned dataset (``data/<rel>``), oldest first."""
    folder = project / "data" / rel
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def read_version(project: Path, rel: str, version: str | None = None) -> pd.DataFrame:
    """One version (default: the latest) of a versioned parquet dataset."""
    version = version or versions(project, rel)[-1]
    return pd.read_parquet(project / "data" / rel / version / Path(rel).name)


def cache_keys(project: Path) -> set[str]:
    """Keys in the project's response cache (read-only; empty while it does not exist yet)."""
    path = project / "data" / "cache" / "llm_cache.sqlite"
    if not path.exists():
        return set()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return {k for (k,) in conn.execute("SELECT key FROM responses")}
    except sqlite3.OperationalError:  # created, but its table not yet
        return set()
    finally:
        conn.close()


def mlflow_runs(project: Path) -> list:
    """Runs of the project's experiment, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("r2_write")
    assert experiment is not None, "no MLflow experiment 'r2_write' in the project's store"
    return sorted(client.search_runs([experiment.experiment_id], max_results=100), key=lambda r: r.info.start_time)


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    """Array cells (list columns read back from parquet) as JSON text, so frames compare with
    ``assert_frame_equal`` (NaN inside a list compares equal to NaN)."""
    out = df.copy()
    for col in out.columns:
        if out[col].map(lambda v: hasattr(v, "tolist")).any():
            out[col] = out[col].map(lambda v: json.dumps([None if x != x else x for x in v.tolist()]))
    return out.reset_index(drop=True)
