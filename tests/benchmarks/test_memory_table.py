"""benchmarks/memory_table.py: parameter counts from the configs, the table for 8 x 80 GB at conf/paper's lengths."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_table.py"


@pytest.fixture(scope="module")
def memory_table():
    spec = importlib.util.spec_from_file_location("memory_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["memory_table"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,published", [("Qwen2.5-0.5B", 0.494e9), ("Qwen2.5-7B", 7.62e9), ("Llama-3.1-8B", 8.03e9)])
def test_parameter_counts_match_the_published_sizes(memory_table, name, published):
    assert memory_table.Shape.from_config(memory_table.MODELS[name]).params == pytest.approx(published, rel=0.01)


def test_kv_cache_per_token_from_the_config(memory_table):
    # Llama-3.1-8B: 2 (K, V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token
    assert memory_table.Shape.from_config(memory_table.MODELS["Llama-3.1-8B"]).kv_bytes_per_token == 128 * 1024


def test_table_for_8_gpus_of_80_gb(memory_table, capsys):
    out = memory_table.main(["--gpus", "8", "--gpu-gb", "80"])
    assert out == capsys.readouterr().out.rstrip("\n")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "B) |" in line]
    assert len(rows) == 9  # 3 models x SFT, PPO, GRPO
    assert {r.split(" | ")[1] for r in rows} == {"SFT", "PPO (separate critic)", "GRPO"}
    # conf/paper's PPO: 2048-token prompts + 25088-token responses, 32 rollouts over 8 GPUs
    assert "2 x 27136 tok, 4 rollouts/GPU" in out
    # sharding divides the states: twice the GPUs, about half the weights+grads+AdamW column
    settings = memory_table.paper_settings()
    shape = memory_table.Shape.from_config(memory_table.MODELS["Qwen2.5-7B"])
    eight, sixteen = (memory_table.stage_rows("7B", shape, n, settings)[0]["states"] for n in (8, 16))
    assert eight == pytest.approx(2 * sixteen) and eight / memory_table.GIB == pytest.approx(16 * 7.62e9 / 8 / 2**30, rel=0.01)
