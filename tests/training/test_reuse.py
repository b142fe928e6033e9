"""r2_write.training.reuse: an identical finished training is reused, anything else trains."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from r2_write.llm.cache import model_identity
from r2_write import runs
from r2_write.training import reuse
from r2_write.training.reuse import reuse_or_train


def _trainer(tmp_path, calls):
    def train():
        calls.append(1)
        out = tmp_path / f"out{len(calls)}"
        out.mkdir()
        (out / "config.json").write_text(json.dumps({"run": len(calls)}))
        return str(out), {"history": [{"loss": 1.0 / len(calls)}]}
    return train


def test_an_identical_training_is_reused_and_a_changed_one_trains(tmp_path):
    calls, root = [], tmp_path / "trained"
    parts = {"settings": {"lr": 1e-5}, "data": [np.array(["p1", "p2"])], "base": "sha256:abc"}
    first, result, fresh = reuse_or_train("sft", parts, _trainer(tmp_path, calls), root=root)
    assert fresh and calls == [1] and result == {"history": [{"loss": 1.0}]}
    again, result2, fresh2 = reuse_or_train("sft", parts, _trainer(tmp_path, calls), root=root)
    assert not fresh2 and calls == [1] and again == first and result2 == result
    assert json.loads(open(f"{again}/config.json").read()) == {"run": 1}
    assert not os.stat(f"{again}/config.json").st_mode & 0o222  # frozen: catalog versions hard-link it
    changed = {**parts, "settings": {"lr": 2e-5}}
    _, _, fresh3 = reuse_or_train("sft", changed, _trainer(tmp_path, calls), root=root)
    assert fresh3 and calls == [1, 1]
    _, _, fresh4 = reuse_or_train("ppo", parts, _trainer(tmp_path, calls), root=root)  # another stage
    assert fresh4 and len(calls) == 3


def test_disabled_always_trains_and_stores_nothing(tmp_path):
    calls, root = [], tmp_path / "trained"
    for _ in range(2):
        model_dir, _, fresh = reuse_or_train("sft", {"x": 1}, _trainer(tmp_path, calls), enabled=False, root=root)
        assert fresh and model_dir.startswith(str(tmp_path / "out"))
    assert calls == [1, 1] and not root.exists()


def test_an_unfinished_entry_is_not_reused(tmp_path):
    calls, root = [], tmp_path / "trained"
    model_dir, _, _ = reuse_or_train("sft", {"x": 1}, _trainer(tmp_path, calls), root=root)
    (tmp_path / "trained" / model_dir.split("/")[-2] / reuse.RESULT_FILE).unlink()  # killed before result.json
    _, _, fresh = reuse_or_train("sft", {"x": 1}, _trainer(tmp_path, calls), root=root)
    assert fresh and calls == [1, 1]


def test_changed_code_or_libraries_change_the_key(monkeypatch, tmp_path):
    calls, root = [], tmp_path / "trained"
    reuse_or_train("sft", {"x": 1}, _trainer(tmp_path, calls), root=root)
    monkeypatch.setattr(runs, "_code_identity", lambda: {"r2_write": "edited", "torch": "9.9"})
    _, _, fresh = reuse_or_train("sft", {"x": 1}, _trainer(tmp_path, calls), root=root)
    assert fresh and calls == [1, 1]


def test_model_identity_is_the_content_not_the_path(tmp_path):
    a = tmp_path / "v1" / "sft"
    a.mkdir(parents=True)
    (a / "config.json").write_text("{}")
    (a / "model.safetensors").write_bytes(b"\0" * 1000)
    b = tmp_path / "v2" / "sft"
    shutil.copytree(a, b)
    assert model_identity(str(a)) == model_identity(str(b)) != str(a)
    weights = b / "model.safetensors"
    weights.write_bytes(b"\1" + b"\0" * 999)  # retrained in place: same size, new bytes, a later time
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert model_identity(str(b)) != model_identity(str(a))
    assert model_identity("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"  # a name (endpoint or hub id) stays a name
