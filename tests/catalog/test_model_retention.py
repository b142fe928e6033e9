"""Model retention: catalog versions and finished trainings per stage stay within keep_versions / keep_trained."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner
from kedro.io import DatasetError
from kedro.io.core import Version

from r2_write.catalog.model_directory import (
    ModelDirectoryDataset,
    clean_models,
    disk_usage,
    models_usage,
    prune_trained,
)

WEIGHTS = 4096  # bytes of one fake model's weights


def _store(trained, stage: str, key: str, fill: bytes, age: int = 0):
    """A finished-training store entry as r2_write.training.reuse writes it: model/ read-only, result.json last."""
    entry = trained / f"{stage}-{key}"
    (entry / "model").mkdir(parents=True)
    (entry / "model" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (entry / "model" / "model.safetensors").write_bytes(fill * WEIGHTS)
    for p in (entry / "model").iterdir():
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    (entry / "result.json").write_text("{}")
    if age:
        t = entry.stat().st_mtime - age
        os.utime(entry, (t, t))
    return entry / "model"


def _run(models, stages, fills, run: int, keep=(2, 2)):
    """One default-like run: each stage trains (a new store entry when ``fills`` changes) and saves a catalog version."""
    for stage in stages:
        key = f"{abs(hash((stage, fills[stage]))) % 16**12:012x}"
        entry = models / "trained" / f"{stage}-{key}"
        if not entry.is_dir():  # trains: the trainer's final model in its checkpoint folder, then the store's copy
            final = models / "checkpoints" / entry.name / "final"
            final.mkdir(parents=True)
            (final / "config.json").write_text("{}")
            (final / "model.safetensors").write_bytes(fills[stage] * WEIGHTS)
        src = entry / "model" if entry.is_dir() else _store(models / "trained", stage, key, fills[stage])
        ds = ModelDirectoryDataset(filepath=str(models / stage), version=Version(None, f"2026-01-0{run}T00.00.00.000Z"),
                                   keep_versions=keep[0], keep_trained=keep[1])
        ds.save(str(src))


def test_two_default_runs_in_a_row_stay_within_retention(tmp_path):
    models = tmp_path / "06_models"
    stages = ("sft", "ppo", "ppo_outcome", "grpo")
    _run(models, stages, {s: b"a" for s in stages}, 1)
    first = disk_usage(models)
    assert first == pytest.approx(4 * WEIGHTS, rel=0.01)  # catalog versions link the store: one copy per stage
    assert not (models / "checkpoints").exists() or not any((models / "checkpoints").iterdir())  # finals dropped once stored
    _run(models, stages, {s: b"a" for s in stages}, 2)  # identical rerun: reuses every training
    assert disk_usage(models) == first
    # code changed: every stage trains again, twice; retention keeps 2 versions and 2 trainings per stage
    _run(models, stages, {s: b"b" for s in stages}, 3)
    _run(models, stages, {s: b"c" for s in stages}, 4)
    usage = {u.stage: u for u in models_usage(models)}
    assert {s: (usage[s].versions, usage[s].trained) for s in stages} == {s: (2, 2) for s in stages}
    assert disk_usage(models) <= 4 * 2 * WEIGHTS * 1.01  # at most keep_trained copies per stage
    assert sorted(p.name for p in (models / "ppo").iterdir()) == ["2026-01-03T00.00.00.000Z", "2026-01-04T00.00.00.000Z"]
    assert ModelDirectoryDataset(filepath=str(models / "ppo"), version=Version(None, None)).load().startswith(
        str(models / "ppo" / "2026-01-04T00.00.00.000Z"))
    # ppo's pruning never touches ppo_outcome's entries (a prefix of its name)
    assert len([p for p in (models / "trained").iterdir() if p.name.startswith("ppo_outcome-")]) == 2


def test_without_retention_every_version_stays(tmp_path):
    models = tmp_path / "06_models"
    for run, fill in enumerate((b"a", b"b", b"c"), start=1):
        _run(models, ("sft",), {"sft": fill}, run, keep=(None, None))
    assert models_usage(models)[0].versions == 3 and models_usage(models)[0].trained == 3
    assert disk_usage(models) == pytest.approx(3 * WEIGHTS, rel=0.01)


def test_the_reused_training_is_kept_as_most_recently_used(tmp_path):
    trained = tmp_path / "trained"
    old = _store(trained, "sft", "aaaaaaaaaaaa", b"a", age=3000).parent
    _store(trained, "sft", "bbbbbbbbbbbb", b"b", age=2000)
    _store(trained, "sft", "cccccccccccc", b"c", age=1000)
    ds = ModelDirectoryDataset(filepath=str(tmp_path / "sft"), version=Version(None, "2026-01-01T00.00.00.000Z"),
                               keep_versions=1, keep_trained=2)
    ds.save(str(old / "model"))  # a rerun reuses the oldest entry: it becomes the newest
    assert sorted(p.name for p in trained.iterdir()) == ["sft-aaaaaaaaaaaa", "sft-cccccccccccc"]
    assert prune_trained(trained, "sft", 1, protect=old) == [trained / "sft-cccccccccccc"]


@pytest.mark.parametrize("field,value", [("keep_versions", 0), ("keep_trained", -1), ("keep_versions", "2"), ("keep_trained", True)])
def test_bad_retention_fails_naming_the_field(field, value, tmp_path):
    with pytest.raises(DatasetError, match=rf"^{field} must be a whole number >= 1 \(or null to keep everything\), got"):
        ModelDirectoryDataset(filepath=str(tmp_path / "x"), **{field: value})


def test_catalog_sets_a_small_retention_and_kedro_validates_it(project_root):
    from kedro.io import DataCatalog
    from omegaconf import OmegaConf

    catalog = OmegaConf.to_container(OmegaConf.load(project_root / "conf" / "base" / "catalog.yml"))
    factory = catalog["{stage}.model"]
    assert 1 <= factory["keep_versions"] <= 3 and 1 <= factory["keep_trained"] <= 3
    ds = DataCatalog.from_config({"sft.model": {**factory, "filepath": "data/06_models/sft"}})["sft.model"]
    assert ds._describe()["keep_versions"] == factory["keep_versions"]
    with pytest.raises(DatasetError, match="keep_versions must be a whole number"):
        DataCatalog.from_config({"sft.model": {**factory, "filepath": "x", "keep_versions": 0}})["sft.model"]


def test_clean_models_reports_and_frees(tmp_path, monkeypatch):
    from r2_write.cli import cli

    models = tmp_path / "data" / "06_models"
    for run, fill in enumerate((b"a", b"b", b"c"), start=1):
        _run(models, ("sft", "ppo"), {"sft": fill, "ppo": fill}, run, keep=(None, None))
    (models / "trained" / "sft-0123456789ab.partial").mkdir()
    (models / "base_model").mkdir()
    (models / "base_model" / "config.json").write_text("{}")
    (models / "base_model" / "w").write_bytes(b"z" * WEIGHTS)
    before = disk_usage(models)
    dry = clean_models(models, 1, 1, dry_run=True)
    assert disk_usage(models) == before and dry["freed"] == pytest.approx(2 * 2 * WEIGHTS, rel=0.05)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "base" / "catalog.yml").write_text(
        '"{stage}.model":\n  type: r2_write.catalog.model_directory.ModelDirectoryDataset\n  filepath: data/06_models/{stage}\n'
        "  versioned: true\n  keep_versions: 1\n  keep_trained: 1\n")
    result = CliRunner().invoke(cli, ["clean-models"])
    assert result.exit_code == 0, result.output
    assert "keep 1 catalog version(s) and 1 finished training(s) per stage" in result.output
    assert "sft: 1 version(s), 1 stored training(s), 4.0 KiB" in result.output and "freed 16.1 KiB" in result.output
    assert disk_usage(models) == before - dry["freed"]
    assert not (models / "trained" / "sft-0123456789ab.partial").exists() and (models / "base_model" / "w").exists()
    again = CliRunner().invoke(cli, ["clean-models", "--keep-versions", "1"])
    assert "freed 0 B" in again.output
    assert CliRunner().invoke(cli, ["clean-models", "--keep-trained", "0"]).exit_code == 2  # typed option
