"""r2_write.runs: one run identity (resume directory and reuse store), pruning, resume points."""

import json

import numpy as np

from r2_write import runs
from r2_write.runs import checkpoint_dir, latest_checkpoint, prune_checkpoints, remove_checkpoints, run_key


def _key(name="sft", settings=None, model="m", data=("p",)):
    return run_key(name, {"settings": settings or {"lr": 1, "steps": 2}, "model": model, "data": list(data)})


def test_run_key_is_stable_and_changes_with_any_input():
    a = _key()
    assert a == _key(settings={"steps": 2, "lr": 1})  # key order does not matter
    assert checkpoint_dir("sft", a).startswith("data/06_models/checkpoints/sft-")
    assert len({a, _key(settings={"lr": 1, "steps": 3}), _key(data=("q",)), _key(model="n"), _key(name="grpo")}) == 5


def test_run_key_ignores_how_checkpoints_are_kept():
    resume = {"output_dir": "x", "save_steps": 3, "save_total_limit": 2, "save_every": 4, "keep_checkpoints": 0,
              "cleanup_checkpoints": False, "reuse_trained": False}
    assert _key(settings={"lr": 1, **resume}) == _key(settings={"lr": 1})


def test_run_key_hashes_arrays_in_full_and_follows_the_code(monkeypatch):
    long = np.array([f"p{i}" for i in range(2000)])
    edited = long.copy()
    edited[1000] = "changed"  # str() of an array over 1000 items elides the middle
    assert run_key("ppo", {"data": long}) != run_key("ppo", {"data": edited})
    before = run_key("ppo", {"data": long})
    monkeypatch.setattr(runs, "_code_identity", lambda: {"r2_write": "edited"})
    assert run_key("ppo", {"data": long}) != before


def test_prune_keeps_the_newest_by_step_number_not_by_name(tmp_path):
    for step in (2, 10, 9, 1):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "final").mkdir()
    deleted = prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in deleted) == ["checkpoint-1", "checkpoint-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-9", "final"]
    assert prune_checkpoints(tmp_path, keep=0) == [] and prune_checkpoints(tmp_path / "missing", keep=1) == []


def test_remove_deletes_every_checkpoint_and_nothing_else(tmp_path):
    for name in ("checkpoint-1", "checkpoint-2", "final", "checkpoint-x"):
        (tmp_path / name).mkdir()
    assert sorted(p.name for p in remove_checkpoints(tmp_path)) == ["checkpoint-1", "checkpoint-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-x", "final"]
    assert remove_checkpoints(tmp_path / "missing") == []


def test_latest_checkpoint_skips_a_checkpoint_killed_while_writing(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    assert latest_checkpoint(tmp_path).name == "checkpoint-1"
    (tmp_path / "checkpoint-2").mkdir()  # no trainer_state.json: the save was interrupted
    (tmp_path / "checkpoint-10").mkdir()
    assert latest_checkpoint(tmp_path).name == "checkpoint-1"
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-10"  # by step number, not by name
