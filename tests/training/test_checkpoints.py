"""Resume-checkpoint directories: stable names per configuration, pruning, resume points."""

import json

from r2_write.training.checkpoints import prune_checkpoints, remove_checkpoints, resume_point, run_dir


def test_run_dir_is_stable_and_changes_with_any_input():
    a = run_dir("sft", "m", {"lr": 1, "steps": 2}, ["p"])
    assert a == run_dir("sft", "m", {"steps": 2, "lr": 1}, ["p"])  # key order does not matter
    assert a.startswith("data/06_models/checkpoints/sft-")
    assert len({a, run_dir("sft", "m", {"lr": 1, "steps": 3}, ["p"]), run_dir("sft", "m", {"lr": 1, "steps": 2}, ["q"]),
                run_dir("grpo", "m", {"lr": 1, "steps": 2}, ["p"])}) == 4


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


def test_resume_point_skips_a_checkpoint_killed_while_writing(tmp_path):
    assert resume_point(tmp_path / "missing") is None
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    assert resume_point(tmp_path).endswith("checkpoint-1")
    (tmp_path / "checkpoint-2").mkdir()  # no trainer_state.json: the save was interrupted
    (tmp_path / "checkpoint-10").mkdir()
    assert resume_point(tmp_path).endswith("checkpoint-1")
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{}")
    assert resume_point(tmp_path).endswith("checkpoint-10")  # by step number, not by name
