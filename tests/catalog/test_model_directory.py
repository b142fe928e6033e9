"""ModelDirectoryDataset: save/load/exists and versioned round trips in tmp_path."""

from __future__ import annotations

import json

import pytest
from kedro.io import DatasetError
from kedro.io.core import Version

from r2_write.catalog.model_directory import ModelDirectoryDataset


@pytest.fixture
def checkpoint(tmp_path):
    """A fake save_pretrained directory (config.json + weights file)."""
    path = tmp_path / "trainer_output"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (path / "model.safetensors").write_bytes(b"\0" * 16)
    return path


class TestModelDirectoryDataset:
    def test_save_and_load(self, tmp_path, checkpoint):
        ds = ModelDirectoryDataset(filepath=str(tmp_path / "models" / "sft"))
        assert not ds.exists()
        ds.save(str(checkpoint))
        loaded = ds.load()
        assert loaded == str(tmp_path / "models" / "sft")
        assert json.loads((tmp_path / "models/sft/config.json").read_text())["hidden_size"] == 8
        assert (tmp_path / "models/sft/model.safetensors").read_bytes() == b"\0" * 16
        assert ds.exists()
        assert not (tmp_path / "models" / "sft.partial").exists()

    def test_load_missing_checkpoint(self, tmp_path):
        (tmp_path / "empty").mkdir()
        with pytest.raises(DatasetError, match=r"no model checkpoint \(config.json\)"):
            ModelDirectoryDataset(filepath=str(tmp_path / "empty")).load()

    def test_save_rejects_non_checkpoint(self, tmp_path):
        (tmp_path / "junk").mkdir()
        with pytest.raises(DatasetError, match="is not a saved model directory"):
            ModelDirectoryDataset(filepath=str(tmp_path / "out")).save(str(tmp_path / "junk"))
        assert not (tmp_path / "out").exists()

    def test_versioned_round_trip(self, tmp_path, checkpoint):
        root = tmp_path / "models" / "ppo"
        v1 = ModelDirectoryDataset(filepath=str(root), version=Version(None, "2024-01-01T00.00.00.000Z"))
        v1.save(str(checkpoint))
        (checkpoint / "config.json").write_text(json.dumps({"hidden_size": 16}))
        v2 = ModelDirectoryDataset(filepath=str(root), version=Version(None, "2024-01-02T00.00.00.000Z"))
        v2.save(str(checkpoint))

        latest = ModelDirectoryDataset(filepath=str(root), version=Version(None, None))
        assert latest.exists()
        path = latest.load()
        assert path.endswith("2024-01-02T00.00.00.000Z/ppo")
        assert json.loads((root / "2024-01-02T00.00.00.000Z/ppo/config.json").read_text())["hidden_size"] == 16

        pinned = ModelDirectoryDataset(filepath=str(root), version=Version("2024-01-01T00.00.00.000Z", None))
        assert json.loads((tmp_path / pinned.load() / "config.json").read_text())["hidden_size"] == 8

    def test_versioned_save_never_overwrites(self, tmp_path, checkpoint):
        ds = ModelDirectoryDataset(filepath=str(tmp_path / "m"), version=Version(None, "2024-01-01T00.00.00.000Z"))
        ds.save(str(checkpoint))
        with pytest.raises(DatasetError):
            ds.save(str(checkpoint))

    def test_versioned_without_versions(self, tmp_path):
        ds = ModelDirectoryDataset(filepath=str(tmp_path / "none"), version=Version(None, None))
        assert not ds.exists()
        with pytest.raises(DatasetError):
            ds.load()

    def test_describe_and_preview(self, tmp_path, checkpoint):
        ds = ModelDirectoryDataset(filepath=str(checkpoint), metadata={"kedro-viz": {"layer": "models"}})
        assert ds._describe()["filepath"] == str(checkpoint)
        assert ds.preview() == {"model_type": "llama", "hidden_size": 8}
        assert ds.metadata["kedro-viz"]["layer"] == "models"

    def test_embedded_model_dir(self, embedded_model_dir):
        ds = ModelDirectoryDataset(filepath=str(embedded_model_dir))
        assert ds.exists() and ds.load() == str(embedded_model_dir)


class TestLinkOrCopy:
    """Read-only files (a stored finished training) are hard-linked; writable ones are copied."""

    def test_read_only_source_is_linked_writable_is_copied(self, tmp_path, checkpoint):
        (checkpoint / "model.safetensors").chmod(0o444)
        ModelDirectoryDataset(filepath=str(tmp_path / "out")).save(str(checkpoint))
        src, out = checkpoint, tmp_path / "out"
        assert (out / "model.safetensors").stat().st_ino == (src / "model.safetensors").stat().st_ino
        assert (out / "config.json").stat().st_ino != (src / "config.json").stat().st_ino
        assert (out / "config.json").read_text() == (src / "config.json").read_text()

    def test_a_failed_link_falls_back_to_a_copy(self, tmp_path, checkpoint, monkeypatch):
        (checkpoint / "model.safetensors").chmod(0o444)

        def no_link(src, dst):
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr("r2_write.catalog.model_directory.os.link", no_link)
        ModelDirectoryDataset(filepath=str(tmp_path / "out")).save(str(checkpoint))
        out = tmp_path / "out" / "model.safetensors"
        assert out.read_bytes() == b"\0" * 16
        assert out.stat().st_ino != (checkpoint / "model.safetensors").stat().st_ino
