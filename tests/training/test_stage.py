"""r2_write.training.stage: one home for a training stage (reward, run identity, launch switch, reuse, replay)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2_write.runs import checkpoint_dir, run_key
from r2_write.training import stage as stage_mod
from r2_write.training.stage import Stage, train_stage


class RecordingLogger:
    """Stands in for NestedRunLogger: records every (run, step, metrics)."""

    logged: list = []

    def __init__(self, run_name, params=None):
        self.run_name, self.history = run_name, []

    def __enter__(self):
        return self

    def __call__(self, metrics, step):
        self.history.append({"step": step, **metrics})
        RecordingLogger.logged.append((self.run_name, step, dict(metrics)))

    def __exit__(self, *exc):
        return None


@pytest.fixture(autouse=True)
def recording(monkeypatch, tmp_path):
    RecordingLogger.logged = []
    monkeypatch.setattr(stage_mod, "NestedRunLogger", RecordingLogger)
    monkeypatch.chdir(tmp_path)  # the trained store and checkpoints are relative to the project
    return RecordingLogger.logged


def _model(path: Path, tag: int) -> str:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"tag": tag}))
    return str(path)


def _stage(tmp_path, calls, *, launch=None, live=True, name="ppo", settings=None):
    def in_process(output_dir, log):
        calls.append(("in_process", output_dir))
        if live and log is not None:
            for step in (1, 2):
                log({"reward/mean": float(step)}, step)
        return _model(tmp_path / f"out{len(calls)}", len(calls)), {"history": [{"reward/mean": 1.0}, {"reward/mean": 2.0}]}

    def launched(launch_, output_dir):
        calls.append(("launched", output_dir, launch_))
        return _model(tmp_path / f"out{len(calls)}", len(calls)), {"history": [{"reward/mean": 5.0}]}

    parts = {"settings": settings or {"lr": 1.0}, "data": ["p"]}
    return Stage(name, parts, in_process, launched, launch, None, True, log_params={"lr": 1.0})


def test_in_process_logs_live_once_in_the_run_identity_directory(tmp_path, recording):
    calls = []
    run = train_stage(_stage(tmp_path, calls))
    key = run_key("ppo", {"settings": {"lr": 1.0}, "data": ["p"]})
    assert calls == [("in_process", checkpoint_dir("ppo", key))] and run.output_dir == checkpoint_dir("ppo", key)
    assert run.fresh and [step for _, step, _ in recording] == [1, 2]  # not replayed a second time
    assert Path(run.model_dir).parent.name == f"ppo-{key}"  # the store and the checkpoints share the key


def test_a_trainer_that_does_not_log_live_is_replayed(tmp_path, recording):
    train_stage(_stage(tmp_path, [], live=False))
    assert [(n, s, m["reward/mean"]) for n, s, m in recording] == [("ppo", 1, 1.0), ("ppo", 2, 2.0)]


def test_launched_runs_in_processes_and_is_replayed(tmp_path, recording):
    calls = []
    run = train_stage(_stage(tmp_path, calls, launch="LAUNCH"))
    assert calls[0][0] == "launched" and calls[0][2] == "LAUNCH" and calls[0][1] == run.output_dir
    assert [(s, m["reward/mean"]) for _, s, m in recording] == [(1, 5.0)]


def test_an_identical_rerun_reuses_and_replays_and_a_changed_one_trains(tmp_path, recording):
    calls = []
    first = train_stage(_stage(tmp_path, calls))
    recording.clear()
    again = train_stage(_stage(tmp_path, calls))
    assert len(calls) == 1 and not again.fresh and again.model_dir == first.model_dir
    assert [s for _, s, _ in recording] == [1, 2]  # the reused history still reaches MLflow
    changed = train_stage(_stage(tmp_path, calls, settings={"lr": 2.0}))
    assert len(calls) == 2 and changed.fresh and changed.output_dir != first.output_dir


def test_the_users_output_dir_wins(tmp_path):
    calls = []
    s = _stage(tmp_path, calls)
    s.output_dir = str(tmp_path / "mine")
    assert train_stage(s).output_dir == str(tmp_path / "mine") and calls[0][1] == str(tmp_path / "mine")
