"""Resume-checkpoint directories: stable names per configuration, pruning, resume points."""

import json

from r2_write.training.checkpoints import latest_checkpoint, prune_checkpoints, remove_checkpoints, run_dir


def test_run_dir_is_stable_and_changes_with_any_input():
    a = run_dir("sft", {"lr": 1, "steps": 2}, "m", ["p"])
    assert a == run_dir("sft", {"steps": 2, "lr": 1}, "m", ["p"])  # key order does not matter
    assert a.startswith("data/06_models/checkpoints/sft-")
    assert len({a, run_dir("sft", {"lr": 1, "steps": 3}, "m", ["p"]), run_dir("sft", {"lr": 1, "steps": 2}, "m", ["q"]),
                run_dir("sft", {"lr": 1, "steps": 2}, "n", ["p"]), run_dir("grpo", {"lr": 1, "steps": 2}, "m", ["p"])}) == 5


def test_run_dir_ignores_how_checkpoints_are_kept():
    resume = {"output_dir": "x", "save_steps": 3, "save_total_limit": 2, "save_every": 4, "keep_checkpoints": 0,
              "cleanup_checkpoints": False}
    assert run_dir("ppo", {"lr": 1, **resume}, "m") == run_dir("ppo", {"lr": 1}, "m")


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
