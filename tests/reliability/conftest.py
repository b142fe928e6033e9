"""Fixtures of the reliability tests: a project template to copy, and a run through a faulty server
(the ``fault_server`` factory is in tests/conftest.py)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.llm.fault_server import FaultServer
from tests.reliability._project import (
    JUDGE_MARKER,
    SECRET,
    SECRET_ENV,
    copy_project,
    kedro_args,
    kedro_env,
    make_template,
    run_kedro,
    server_params,
)

FLAKY_PROMPTS = 6


@pytest.fixture(scope="session")
def project_template(tmp_path_factory, project_root) -> Path:
    """A project copy with an initialised MLflow store; copy it with ``new_project``."""
    return make_template(tmp_path_factory.mktemp("reliability") / "template", project_root)


@pytest.fixture
def new_project(project_template, tmp_path):
    """Factory: ``new_project("name")`` is a fresh copy of the template under ``tmp_path``."""
    return lambda name="project": copy_project(project_template, tmp_path / name)


@dataclass
class FlakyRun:
    """A finished ``kedro run --pipelines rubrics,synthesis`` through a 30%-faulty endpoint."""

    project: Path
    proc: subprocess.CompletedProcess
    requests: int
    completed: int
    faults: dict


@pytest.fixture(scope="session")
def flaky_kedro_run(project_template, tmp_path_factory) -> FlakyRun:
    """Every role on one FaultServer (30% faults of every kind, 0.5 s timeouts, one retry) that
    demands ``Authorization: Bearer <SECRET>``; the roles read the key from ``$R2_TEST_KEY``."""
    project = copy_project(project_template, tmp_path_factory.mktemp("flaky") / "project")
    with FaultServer(latency_s=0.01, fault_rate=0.3, seed=7, judge_marker=JUDGE_MARKER, retry_after_s=0.05,
                     hang_s=1.0, api_key=SECRET) as server:
        params = {
            **server_params(server.base_url, api_key_env=SECRET_ENV, max_retries=1, timeout_s=0.5,
                            backoff_base_s=0.01, backoff_max_s=0.1),
            "synthesis.num_prompts": FLAKY_PROMPTS, "synthesis.loop.max_rounds": 1, "judge.max_attempts": 2,
        }
        proc = run_kedro(project, kedro_args("rubrics,synthesis", params), env=kedro_env(**{SECRET_ENV: SECRET}))
        return FlakyRun(project, proc, server.requests, server.completed, dict(server.faults))
