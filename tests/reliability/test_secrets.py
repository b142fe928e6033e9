"""Secrets: an API key given through ``api_key_env`` never lands in MLflow, logs, data or conf.

The flaky kedro run (conftest ``flaky_kedro_run``) authenticates every request with a
recognisable key read from ``$R2_TEST_KEY``; the server refuses requests without it, and
its faults put error texts into logs and ``synthesis.failures``. Afterwards every file of
the project copy (MLflow store, parquet, response cache, conf) and the run's stdout and
stderr are searched for the key. A key pasted where the variable's *name* belongs stops
the run before MLflow records anything.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from r2_write.config import ConfigError
from r2_write.hooks import ApiKeyParameterHooks
from tests.reliability._project import SECRET, SECRET_ENV, kedro_args, kedro_env, mlflow_runs, run_kedro, server_params

# the key, its tail without the usual prefix, and its UTF-16 form (how some stores keep text)
NEEDLES = (SECRET.encode(), SECRET[len("sk-"):].encode(), SECRET.encode("utf-16-le"))


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p.relative_to(root)) for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


@pytest.mark.slow
def test_the_key_appears_nowhere(flaky_kedro_run):
    run = flaky_kedro_run
    files = [p for p in run.project.rglob("*") if p.is_file()]
    searched = sorted({p.relative_to(run.project).parts[0] for p in files})
    print(f"\nsecrets: searched {len(files)} files ({', '.join(searched)}) and "
          f"{len(run.proc.stdout) + len(run.proc.stderr)} characters of output")
    assert run.completed > 0, "no request was authenticated: the key was not used"
    # the search does read the MLflow store and the cache: the variable's NAME is in the store
    assert _files_holding(run.project, SECRET_ENV.encode()), "the search found not even the variable name"
    assert (run.project / "data" / "cache" / "llm_cache.sqlite").exists()
    for needle in NEEDLES:
        assert needle.decode("utf-8", "replace") not in run.proc.stdout + run.proc.stderr
        assert not _files_holding(run.project, needle), f"the key is stored in {_files_holding(run.project, needle)}"


def test_api_key_parameter_hook():
    hook = ApiKeyParameterHooks()
    good = {"llm": {"judge": {"api_key_env": "OPENAI_API_KEY"}, "writer": {"api_key_env": None}},
            "evaluation": {"deepresearchgym": {"retriever": {"api_key_env": "DRG_KEY"}}}}
    hook.after_context_created(SimpleNamespace(params=good))
    for path, value in [("llm.judge.api_key_env", SECRET), ("evaluation.deepresearchgym.retriever.api_key_env", "a b"),
                        ("llm.writer.api_key_env", 42)]:
        bad = {"llm": {"judge": {}, "writer": {}}, "evaluation": {"deepresearchgym": {"retriever": {}}}}
        node = bad
        for k in path.split(".")[:-1]:
            node = node[k]
        node["api_key_env"] = value
        with pytest.raises(ConfigError, match=rf"parameter '{path}' must be the NAME") as err:
            hook.after_context_created(SimpleNamespace(params=bad))
        assert str(value) not in str(err.value)


@pytest.mark.slow
def test_a_key_pasted_as_api_key_env_stops_the_run_before_mlflow(new_project, fault_server):
    project = new_project()
    server = fault_server()
    params = {**server_params(server.base_url), "llm.judge.api_key_env": SECRET}
    proc = run_kedro(project, kedro_args("rubrics", params), env=kedro_env(**{SECRET_ENV: SECRET}), check=False)

    assert proc.returncode != 0
    assert "parameter 'llm.judge.api_key_env' must be the NAME of an environment variable" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not any(_files_holding(project, needle) for needle in NEEDLES)
    assert server.requests == 0
    try:
        runs = mlflow_runs(project)
    except AssertionError:  # no experiment at all
        runs = []
    assert not runs, "an MLflow run was started"
