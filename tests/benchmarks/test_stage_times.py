"""benchmarks/stage_times.py without running kedro: the project copy it runs in (tests/test_run.py) and its table."""

from __future__ import annotations

import pytest

from tests.benchmarks._load import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("stage_times")


def test_project_copy_has_conf_raw_prompts_and_the_model_link(tmp_path, project_root, embedded_model_dir):
    from tests.test_run import copy_project

    root = copy_project(tmp_path, project_root, embedded_model_dir)
    assert (root / "pyproject.toml").is_file() and (root / "conf" / "base" / "catalog.yml").is_file()
    assert not list((root / "conf" / "local").iterdir())  # nothing of the developer's conf/local
    assert (root / "data" / "01_raw" / "prompts.jsonl").is_file()
    assert (root / "data" / "06_models" / "base_model").resolve() == embedded_model_dir.resolve()


def test_table_rows_per_stage_ratios_and_calls(bench):
    first = {"time": {"rubrics": 10.0, "sft": 20.0, "total": 30.0}, "calls": {"rubrics": 12, "sft": 0, "total": 12},
             "cache_hits": {"rubrics": 0, "sft": 0}}
    rerun = {"time": {"rubrics": 1.0, "sft": 2.0, "total": 3.0}, "calls": {"rubrics": 0, "sft": 0, "total": 0},
             "cache_hits": {"rubrics": 12, "sft": 0}}
    rows = bench.table(first, rerun, (40.0, 30.0)).splitlines()
    assert rows[2] == "| rubrics | 10.0 | 1.0 | 10% | 12 (0) | 0 (12) |" and rows[3] == "| sft | 20.0 | 2.0 | 10% | 0 (0) | 0 (0) |"
    assert rows[4] == "| total | 30.0 | 3.0 | 10% | 12 (0) | 0 (12) |"
    assert rows[5] == "| `kedro run` wall (process) | 40.0 | 30.0 | 75% | | |"
    assert not any(r.startswith("| grpo") for r in rows)  # stages absent from both runs are left out


def test_tiny_sizes_are_the_full_run_tests(bench):
    from tests.test_run_full import TINY

    assert bench.tiny_params() == TINY


def test_kedro_env_is_offline_and_sets_threads_only_when_asked(monkeypatch):
    """The environment of the benchmark's (and the tests') kedro runs."""
    from tests.reliability._project import kedro_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = kedro_env(1)
    assert env["OMP_NUM_THREADS"] == "1" and env["HF_HUB_OFFLINE"] == "1" and env["KEDRO_DISABLE_TELEMETRY"] == "true"
    assert "OMP_NUM_THREADS" not in kedro_env(0)  # torch's default
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert kedro_env(0)["OMP_NUM_THREADS"] == "3"  # the caller's own setting stays
