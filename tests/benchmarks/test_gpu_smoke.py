"""benchmarks/gpu_smoke.sh: what runs without a GPU (arguments, configs, files, the table); the GPU run itself is manual."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_smoke.sh"


def smoke_module():
    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "benchmarks" / "gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = module
    spec.loader.exec_module(module)
    return module


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PY": sys.executable, **(env or {})})


def test_dry_run_builds_every_stage_config(embedded_model_dir):
    proc = run("--dry-run", "--steps", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for line in ("dry run: vllm: llm=LLMConfig", "dry run: ppo: ppo=PPOConfig; llm=dict", "dry run: sft: sft=SFTParams",
                 "dry run: grpo: grpo=GRPOParams; llm=dict", "dry run: stages [vllm ppo sft grpo], 2 steps each"):
        assert line in out


def test_bad_arguments_stop_before_running():
    assert run("--bogus").returncode == 2
    assert run("--dry-run", env={"STAGES": "ppo dpo"}).returncode == 2
    bad_steps = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py"), "--dry-run", "--steps", "0"],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad_steps.returncode == 2 and "--steps must be >= 1" in bad_steps.stderr


def test_ppo_stage_config_is_the_sharded_paper_path():
    cfg = smoke_module().stage_configs("ppo", "m", 3, 256, "/tmp/x")["ppo"]
    assert cfg.use_vllm and cfg.critic == "separate" and cfg.mixed_precision == "bf16" and cfg.total_steps == 3


def test_table_shows_every_stage():
    table = smoke_module().table([
        {"stage": "ppo", "steps": 3, "rollout_s": 1.5, "reward_s": 0.2, "update_s": 0.9, "torch_peak_gib": 3.2,
         "device_peak_gib": 40.1, "tokens_per_s": 1234.0, "gpu": "NVIDIA H200"},
    ])
    lines = table.splitlines()
    assert lines[0] == "GPU: NVIDIA H200"
    assert "| ppo | 3 | 1.50 | 0.20 | 0.90 | 3.2 / 40.1 | 1234 |  |" in lines
    assert sum("not run" in line for line in lines) == 3  # vllm, sft, grpo


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU message")
def test_a_stage_without_a_gpu_says_so(embedded_model_dir):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py"), "--stage", "sft"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
