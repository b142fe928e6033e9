"""PPO in 2 launched processes (gloo on CPU) computes what 1 process computes on the same global batch.

The launched runs go through :mod:`r2_write.training.launch` (``accelerate launch --multi_gpu``
with ``ACCELERATE_USE_CPU``), on the conftest tiny random Llama (its EOS logit shifted so that
responses end at different lengths), 2 PPO steps of 4 rollouts
(2 per process). Rollouts are greedy (``top_k=1``) so both layouts sample the same tokens, and
the reward is a stand-in deterministic in the completion text (``tests/training/stand_ins.py``)
whose judged completions and steps differ between the processes' shares.

Tolerance: metrics ``rel=1e-4, abs=1e-5``, weights ``atol=1e-5``. Measured on this machine: the
largest metric difference is 7.1e-5 absolute on step 2's ``losses/explained_variance`` (value
-137.0: 5e-7 relative) and the largest weight difference
1.2e-6, float32 sums taken in another order (2 x 2 rows instead of 4). Each cross-process
reduction removed, the tests fail far outside that: advantages whitened per process, weights
7.7e-3 apart and step 1's ``losses/policy_loss`` -0.02800 instead of -0.02827; the loss
weighted by each process's own tokens, weights 7.4e-3 apart; per-process metric means,
``reward/outcome`` NaN instead of 0.889 (one process judged nothing) and explained variance off
by 21.7.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from r2_write.config import ConfigError
from r2_write.rewards.process import ProcessRewardConfig
from r2_write.rl.trainer import train
from r2_write.rl.ppo_config import PPOConfig
from r2_write.training.launch import LaunchParams, launch_command, launch_ppo, parse_launch
from tests.training.stand_ins import text_reward

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Write a haiku about the sea.", "Hi", "Describe a storm in one line.", "Name a colour."]
RUBRICS = ["r1", "r2", "r3", "r4"]
PPO = dict(batch_size=4, mini_batch_size=4, ppo_epochs=2, max_new_tokens=12, top_k=1, learning_rate=1e-3,
           critic_learning_rate=1e-3, total_steps=2, save_every=1, keep_checkpoints=0, cleanup_checkpoints=False)
REWARD = {"function": "tests.training.stand_ins:text_reward", "kwargs": {}}
METRIC_REL, METRIC_ABS, WEIGHT_ATOL = 1e-4, 1e-5, 1e-5


def two_processes(**kw) -> LaunchParams:
    # the launched processes import the stand-in reward from tests/
    return LaunchParams(num_processes=2, verify_replicas=True, env={"PYTHONPATH": str(PROJECT_ROOT)}, **kw)


def weights(model_dir: str) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(model_dir).state_dict()


def max_weight_difference(a: str, b: str) -> float:
    wa, wb = weights(a), weights(b)
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def assert_same_metrics(got: list[dict], expected: list[dict], rel=METRIC_REL, abs_=METRIC_ABS) -> None:
    assert len(got) == len(expected)
    for step, (g, e) in enumerate(zip(got, expected), start=1):
        assert set(g) == set(e)
        for key in e:
            if key.startswith("time/"):
                continue
            if math.isnan(e[key]):
                assert math.isnan(g[key]), (step, key)
            else:
                assert g[key] == pytest.approx(e[key], rel=rel, abs=abs_), (step, key, g[key], e[key])


# ----------------------------------------------------------------------------- the launcher (fast)


def test_launch_block_absent_or_null_means_in_process():
    assert parse_launch(None, "ppo.launch") is None
    assert parse_launch({"num_processes": 2}, "ppo.launch").num_processes == 2
    with pytest.raises(ConfigError, match="ppo.launch.num_procs"):
        parse_launch({"num_procs": 2}, "ppo.launch")


def test_launch_command_on_cpu_gpu_and_several_machines(tmp_path):
    cmd, env = launch_command("ppo", tmp_path, LaunchParams(num_processes=2, cpu=True))
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd
    assert cmd[-4:] == ["-m", "r2_write.training.launch", "ppo", str(tmp_path)]
    assert env == {"ACCELERATE_USE_CPU": "true"}
    config = PROJECT_ROOT / "conf" / "accelerate" / "fsdp.yaml"
    cmd, env = launch_command("sft", tmp_path, LaunchParams(num_processes=8, config_file=str(config), cpu=False))
    assert cmd[cmd.index("--config_file") + 1] == str(config) and "--multi_gpu" not in cmd and env == {}
    cmd, _ = launch_command("grpo", tmp_path, LaunchParams(num_processes=16, num_machines=2, machine_rank=0,
                                                           main_process_ip="10.0.0.1", cpu=False))
    assert cmd[cmd.index("--main_process_ip") + 1] == "10.0.0.1" and cmd[cmd.index("--main_process_port") + 1] == "29500"
    with pytest.raises(ConfigError, match="asks for FSDP, which needs GPUs"):  # accelerate would run plain DDP
        launch_command("ppo", tmp_path, LaunchParams(num_processes=2, config_file=str(config), cpu=True))
    with pytest.raises(ConfigError, match="main_process_ip"):
        launch_command("ppo", tmp_path, LaunchParams(num_machines=2))
    with pytest.raises(ConfigError, match="not found"):
        launch_command("ppo", tmp_path, LaunchParams(config_file="conf/accelerate/none.yaml"))


@pytest.mark.parametrize("name,kind", [("fsdp.yaml", "FSDP"), ("zero3.yaml", "DEEPSPEED")])
def test_accelerate_configs_load_with_accelerates_own_loader(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import FullyShardedDataParallelPlugin

    config = load_config_from_file(str(PROJECT_ROOT / "conf" / "accelerate" / name))
    assert config.distributed_type == kind and config.mixed_precision == "bf16" and not config.use_cpu
    if kind == "FSDP":
        fsdp = config.fsdp_config
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True  # full shard
        assert fsdp["fsdp_activation_checkpointing"] is True and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
        # the plugin accelerate builds from these settings (as `accelerate launch` exports them) accepts them
        plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2, reshard_after_forward=True, auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower(),
            state_dict_type=fsdp["fsdp_state_dict_type"], activation_checkpointing=True,
            cpu_ram_efficient_loading=fsdp["fsdp_cpu_ram_efficient_loading"])
        assert plugin.reshard_after_forward is True and plugin.activation_checkpointing is True
    else:
        zero = config.deepspeed_config
        assert zero["zero_stage"] == 3 and zero["zero3_init_flag"] is True and zero["zero3_save_16bit_model"] is True


# ----------------------------------------------------------------------------- 2 processes (slow)


@pytest.fixture(scope="module")
def policy_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model with an EOS logit raised along a random direction, so that greedy responses
    end at different lengths and the two processes' shares hold different token counts (equal
    counts would hide a loss weighted per process instead of over the global mini-batch)."""
    from transformers import AutoTokenizer

    from r2_write.rl.model import PolicyWithValue
    from r2_write.rl.rollout import rollout
    from r2_write.rl.trainer import step_prompt_indices

    torch.set_num_threads(1)
    lm, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = PPOConfig(**PPO)
    order = [PROMPTS[i] for i in step_prompt_indices(len(PROMPTS), 1, cfg)]
    eos, row = tokenizer.eos_token_id, lm.lm_head.weight.data[tokenizer.eos_token_id].clone()
    direction = torch.randn(row.shape, generator=torch.Generator().manual_seed(1))
    for alpha in (0.1, 0.2, 0.15, 0.12, 0.08, 0.25):
        lm.lm_head.weight.data[eos] = row + alpha * direction
        lengths = rollout(PolicyWithValue(lm), lm, tokenizer, order, cfg).response_mask.sum(1).tolist()
        if sum(lengths[0::2]) != sum(lengths[1::2]) and max(lengths) > 1:
            break
    else:
        pytest.fail(f"no EOS shift gave the processes different token counts (last lengths {lengths})")
    out = tmp_path_factory.mktemp("eos") / "model"
    lm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def runs(policy_dir, tmp_path_factory):
    """The same 2 PPO steps in this process (reference) and in 2 launched processes."""
    tmp = tmp_path_factory.mktemp("distributed")
    torch.set_num_threads(1)
    one = train(policy_dir, PROMPTS, text_reward(), PPOConfig(**PPO, output_dir=str(tmp / "one")), rubrics=RUBRICS)
    start = time.perf_counter()
    two = launch_ppo(two_processes(), policy_dir, PROMPTS, RUBRICS, PPOConfig(**PPO, output_dir=str(tmp / "two")),
                     ProcessRewardConfig(), REWARD)
    two["seconds"] = time.perf_counter() - start
    return one, two, tmp


@pytest.mark.slow
def test_two_processes_end_with_identical_weights_close_to_one_process(runs):
    one, two, _ = runs
    assert two["num_processes"] == 2 and two["distributed_type"] == "MULTI_CPU" and len(two["history"]) == 2
    digests = two["weights_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both processes hold bit-identical weights
    difference = max_weight_difference(one["final_dir"], two["final_dir"])
    print(f"largest weight difference, 1 vs 2 processes: {difference:.2e}")
    assert difference < WEIGHT_ATOL  # per-process advantage whitening: ~8e-3


@pytest.mark.slow
def test_two_processes_log_the_metrics_of_the_global_batch(runs):
    one, two, _ = runs
    # per-process means instead of global sums: reward/format_violations 1.5 instead of 3,
    # reward/outcome of the one judged completion averaged with NaN, losses/* per-shard token means
    assert one["history"][0]["reward/format_violations"] >= 1  # the stand-in leaves some completions unjudged
    worst = max(((abs(g[k] - e[k]), k, step, e[k]) for step, (g, e) in enumerate(zip(two["history"], one["history"]), 1)
                 for k in e if not k.startswith("time/") and not math.isnan(e[k])), default=None)
    print(f"largest metric difference, 1 vs 2 processes: {worst}")
    assert_same_metrics(two["history"], one["history"])


@pytest.mark.slow
def test_fsdp_two_process_run_resumes_after_a_kill_and_matches_one_process(runs, policy_dir):
    """FSDP2 full shard (conf/accelerate/fsdp.yaml) on 2 CPU processes: killed in step 2, resumed, same result.

    accelerate 1.15 runs FSDP on GPUs only; ``R2_WRITE_FSDP_ON_CPU`` puts its state on FSDP for
    CPU processes (torch's ``fully_shard`` runs on gloo), so the sharded path of ``rl/trainer.py``
    (reference sharded too, full state dicts gathered for every checkpoint, optimizer states
    re-sharded on resume) runs here as on GPUs.
    """
    one, _, tmp = runs
    out = tmp / "fsdp"
    cfg = PPOConfig(**PPO, output_dir=str(out))
    fsdp = LaunchParams(num_processes=2, config_file=str(PROJECT_ROOT / "conf" / "accelerate" / "fsdp.yaml"),
                        env={"PYTHONPATH": str(PROJECT_ROOT), "R2_WRITE_FSDP_ON_CPU": "1"})
    killing = {**REWARD, "kwargs": {"kill_rank0_at_call": 2}}  # SIGKILL of the main process in step 2
    with pytest.raises(RuntimeError, match="the launched training failed"):
        launch_ppo(fsdp, policy_dir, PROMPTS, RUBRICS, cfg, ProcessRewardConfig(), killing)
    assert sorted(p.name for p in out.iterdir() if p.name != "launch") == ["checkpoint-1"]
    assert '"optimizer_format": "full"' in (out / "checkpoint-1" / "trainer_state.json").read_text()

    resumed = launch_ppo(fsdp, policy_dir, PROMPTS, RUBRICS, cfg, ProcessRewardConfig(), REWARD)
    assert resumed["distributed_type"] == "FSDP"
    assert_same_metrics(resumed["history"], one["history"])
    difference = max_weight_difference(resumed["final_dir"], one["final_dir"])
    print(f"largest weight difference, 1 process vs FSDP on 2 (killed, resumed): {difference:.2e}")
    assert difference < WEIGHT_ATOL


@pytest.mark.slow
def test_a_failing_worker_names_its_error_in_the_message(policy_dir, tmp_path):
    """torchrun's own traceback fills the output's tail: the message keeps the worker's error line."""
    cfg = PPOConfig(**{**PPO, "total_steps": 1}, output_dir=str(tmp_path / "ppo"))
    failing = {**REWARD, "kwargs": {"raise_rank1_at_call": 1}}
    with pytest.raises(RuntimeError, match="(?s)the workers' error lines:.*ValueError: stand-in reward failed at call 1"):
        launch_ppo(two_processes(), policy_dir, PROMPTS, RUBRICS, cfg, ProcessRewardConfig(), failing)


@pytest.mark.slow
def test_ppo_node_trains_in_launched_processes(tmp_path, tiny_model_dir, project_params):
    """The Kedro node with ``ppo.launch``: the judge is built in each process from params:llm; model and history come back."""
    import pandas as pd
    from kedro.runner import SequentialRunner

    from r2_write.pipelines.ppo import create_pipeline
    from tests.pipelines.conftest import memory_catalog

    role = {"backend": "transformers", "model": tiny_model_dir, "device": "cpu", "cache_path": None}
    params = {"batch_size": 2, "mini_batch_size": 2, "max_new_tokens": 8, "total_steps": 2, "save_every": 1,
              "learning_rate": 1e-3, "check_length_budget": False, "output_dir": str(tmp_path / "ppo"),
              "launch": {"num_processes": 2, "verify_replicas": True}}
    catalog = memory_catalog({
        "scoring.rl_set": pd.DataFrame({"id": ["a", "b"], "prompt": ["Plan a lesson.", "Write an ad."],
                                        "criteria": [None, None]}),
        "scoring.sft_set": pd.DataFrame({"prompt": ["Q"], "completion": ["A"]}), "sft.model": tiny_model_dir,
        "params:ppo": params, "params:llm": {"judge": role, "policy": role},
        "params:judge": project_params["judge"], "params:generic_rubric": project_params["generic_rubric"],
    }, keep=("ppo.history",))
    SequentialRunner().run(create_pipeline(), catalog)
    model_dir = catalog.load("ppo.model")
    assert max_weight_difference(model_dir, tiny_model_dir) > 0  # trained
    assert len(catalog.load("ppo.history")) == 2
    metrics = catalog.load("ppo_metrics")
    assert len(metrics["ppo/reward/mean"]) == 2 and metrics["ppo/judge/failed_items"][0]["value"] == 0
    assert sorted(p.name for p in (tmp_path / "ppo").iterdir()) == ["final"]  # no checkpoints, no launch files left


@pytest.mark.slow
def test_kedro_run_in_several_processes_stops_with_one_message():
    env = {**os.environ, "WORLD_SIZE": "2", "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "300"}
    proc = subprocess.run([sys.executable, "-m", "r2_write", "--pipelines", "ppo"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    assert last.startswith("Error: ConfigError: kedro run was started in 2 processes") and "ppo.launch" in last


@pytest.mark.slow
def test_sft_in_two_processes_trains_and_saves_once(tiny_model_dir, tmp_path):
    """TRL's SFTTrainer in 2 launched processes: 2 steps of 2 examples (1 per process), one final model."""
    from r2_write.training.launch import launch_sft
    from r2_write.training.sft import SFTParams

    completions = [f"<think>\n<plan>\nplan {i}\n</plan>\n</think>\nAnswer {i}." for i in range(4)]
    cfg = SFTParams(max_steps=2, per_device_train_batch_size=1, max_length=64, learning_rate=1e-3, save_steps=1,
                    output_dir=str(tmp_path / "sft"))
    final, history = launch_sft(two_processes(), tiny_model_dir, PROMPTS, completions, cfg)
    assert len(history) == 2 and all(math.isfinite(h["loss"]) for h in history)
    assert max_weight_difference(final, tiny_model_dir) > 0
    assert not list((tmp_path / "sft" / "trainer").glob("checkpoint-*"))  # cleaned up once, by the main process
    assert not (tmp_path / "sft" / "launch").exists()


@pytest.mark.slow
def test_fsdp_shards_and_checkpoints_each_decoder_layer_of_actor_and_critic(tiny_model_dir, tmp_path):
    """conf/accelerate/fsdp.yaml on 2 CPU processes: one FSDP unit per decoder layer (+ the root) and a checkpoint
    wrapper around each, for the actor and the separate critic (accelerate reads ``_no_split_modules`` from the
    wrapper given to ``prepare``; without it each model was one unit and nothing was checkpointed). The chunked
    scores through the sharded actor and reference equal an unsharded model's, and backward reaches every shard."""
    import json

    out = tmp_path / "probe.json"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(PROJECT_ROOT / "conf" / "accelerate" / "fsdp.yaml"), "--num_processes", "2", "--main_process_port",
           str(_free_port()), str(PROJECT_ROOT / "tests" / "training" / "fsdp_probe.py"), tiny_model_dir, str(out)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in (0, 1):
        result = json.loads(Path(f"{out}.{rank}").read_text())
        assert result["distributed_type"].endswith("FSDP") and result["num_layers"] == 2
        for name in ("actor", "critic"):
            assert result[name] == {"fsdp_units": 3, "decoder_layer_units": 2, "checkpointed": 2}, (name, result)
        assert result["reference"] == {"fsdp_units": 3, "decoder_layer_units": 2, "checkpointed": 0}
        assert result["actor_logprob_error"] < 1e-5 and result["reference_logprob_error"] < 1e-5
        assert result["actor_grads"] == result["actor_params"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_collective_timeout_reaches_the_launched_processes(tmp_path, monkeypatch):
    """launch.collective_timeout_s: exported to the workers, which pass it to init_process_group."""
    from datetime import timedelta

    from r2_write.training.launch import TIMEOUT_ENV, _process_group_kwargs

    _, env = launch_command("ppo", tmp_path, LaunchParams(num_processes=2, cpu=True, collective_timeout_s=7200))
    assert env[TIMEOUT_ENV] == "7200"
    monkeypatch.setenv(TIMEOUT_ENV, env[TIMEOUT_ENV])
    assert _process_group_kwargs() == {"timeout": timedelta(hours=2)}
    monkeypatch.delenv(TIMEOUT_ENV)
    assert _process_group_kwargs() == {}  # torch's default
    with pytest.raises(ConfigError, match="ppo.launch.collective_timeout_s"):
        parse_launch({"collective_timeout_s": 5}, "ppo.launch")


def test_launched_ppo_keeps_gradient_checkpointing_as_asked(monkeypatch, tmp_path):
    """Under fsdp.yaml (FSDP_ACTIVATION_CHECKPOINTING) the PPO worker passes gradient_checkpointing on to the trainer,
    which leaves the layers to FSDP's wrappers and fails if none was wrapped (SFT/GRPO: TRL's flag off, FSDP's on)."""
    import r2_write.rl.trainer as trainer_mod
    from r2_write.training import launch as launch_mod

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    seen = {}
    monkeypatch.setattr(trainer_mod, "train", lambda policy_dir, prompts, reward_fn, cfg, **kw: seen.update(cfg=cfg) or {})
    payload = {"config": PPOConfig(**PPO, gradient_checkpointing=True).model_dump(),
               "reward_config": ProcessRewardConfig().model_dump(), "reward": REWARD, "policy_dir": "x",
               "prompts": PROMPTS, "rubrics": RUBRICS, "verify_replicas": False}
    launch_mod._run_ppo(payload)
    assert seen["cfg"].gradient_checkpointing is True
    assert launch_mod._without_double_checkpointing({"gradient_checkpointing": True}, "sft") == {
        "gradient_checkpointing": False}
