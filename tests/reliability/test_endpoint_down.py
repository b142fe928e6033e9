"""The endpoint is down or wrong: ``kedro run`` stops in seconds, exit status 1, one line.

Before the endpoint check, ``kedro run --pipelines rubrics`` against a closed port paid
every request's retry schedule and ended *successfully* with every prompt on the generic
rubric. Now the openai backend checks the endpoint before the stage's first request and the
run stops with ``Error: EndpointError: llm.<role>, model ...: could not reach <url>: ...``
as the last line of its output.
"""

from __future__ import annotations

import socket
import time

from tests.reliability._project import kedro_args, mlflow_runs, run_kedro, versions


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_kedro_run_against_a_closed_port_fails_fast_in_one_line(new_project):
    project = new_project()
    url = _closed_port_url()
    # default retries (5, backoff from 0.5 s) and all 60 prompts: the run
    params = {"llm.rubric_writer.backend": "openai", "llm.rubric_writer.base_url": url,
              "llm.rubric_writer.model": "gpt-4.1"}
    start = time.monotonic()
    proc = run_kedro(project, kedro_args("rubrics", params), check=False, timeout=120)
    elapsed = time.monotonic() - start
    last = proc.stderr.strip().splitlines()[-1]
    print(f"\nclosed port: kedro run exited {proc.returncode} after {elapsed:.1f} s (Kedro start-up included); "
          f"last line: {last}")

    assert proc.returncode == 1
    assert elapsed < 30
    assert last.startswith("Error: EndpointError: llm.rubric_writer, model 'gpt-4.1': could not reach " + url)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert versions(project, "02_intermediate/rubrics/accepted.parquet") == []  # no table of fallbacks
    (run,) = mlflow_runs(project)
    assert run.info.status == "FAILED"
