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


# ----------------------------------------------------------------------------- benchmarks/memory_own_loop.py (measured)

OWN_LOOP = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_own_loop.py"


@pytest.fixture(scope="module")
def own_loop(memory_table):
    spec = importlib.util.spec_from_file_location("memory_own_loop", OWN_LOOP)
    module = importlib.util.module_from_spec(spec)
    sys.modules["memory_own_loop"] = module
    spec.loader.exec_module(module)
    return module


def test_peak_rss_sees_a_tensor_that_lives_only_inside_the_measurement(own_loop):
    import torch

    meter = own_loop.PeakRSS()
    with meter.measure():
        block = torch.ones(64 * 2**20)  # 256 MiB, freed before the measurement ends
        del block
    assert 240 <= meter.peak / own_loop.MIB < 400
    with meter.measure():
        pass
    assert meter.peak / own_loop.MIB < 50


def test_extrapolation_arithmetic_reads_the_logit_copies_and_activation_factor(own_loop, memory_table):
    """Synthetic rows: unchunked grows by 3 fp32 [vocab] rows per token more than chunked -> m = 3; the chunked
    growth equal to the counted activation bytes -> f = 1."""
    shape = memory_table.Shape.from_config(memory_table.MODELS["Qwen2.5-0.5B"])
    args = type("Args", (), {"layers": 1, "chunk": 1024, "prompt": 128})
    counted = 4 * (shape.hidden * 3 + 6 * shape.hidden + 2 * shape.kv_dim + 3 * shape.intermediate)  # bytes per token
    mib = own_loop.MIB
    rows = [{"tokens": t, "mode": mode, "update": (counted + (3 * 4 * shape.vocab if mode == "unchunked" else 0)) * t / mib}
            for t in (1000, 3000) for mode in ("chunked", "unchunked")]
    text = own_loop.extrapolate(rows, args, shape)
    assert "f = 1.00" in text and "m = 3.0 fp32 logits copies" in text
    qwen = next(line for line in text.splitlines() if line.startswith("| Qwen2.5-7B | PPO update"))
    cells = [c.strip() for c in qwen.split("|")[1:-1]]
    # unchunked logits: 3 x 25088 x 152064 x 4 bytes = 42.6 GiB; chunked: 3 x 1024 rows = 1.7 GiB
    assert cells[5] == "42.6" and cells[4] == "1.7"


@pytest.mark.slow
def test_own_loop_memory_benchmark_runs_small(own_loop):
    text = own_loop.main(["--tokens", "64", "128", "--chunk", "32", "--unchunked-max", "128", "--trl-default-max", "64",
                          "--threads", "1"])
    rows = [line for line in text.splitlines() if line.startswith("| 64 ") or line.startswith("| 128 ")]
    assert len(rows) == 4 and "sft, TRL's 32768-row tiles" in text
    assert "| Llama-3.1-8B | PPO update |" in text and "MiB per 1k response tokens" in text
