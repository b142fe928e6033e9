"""The ppo node with engine verl: the missing-environment and failed-subprocess messages; with a stub veRL, the run it writes."""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from r2_write.pipelines.ppo.nodes import train_ppo_policy
from r2_write.rl.verl.launch import VerlError, run_streamed
from tests.pipelines.training_inputs import SFT_SET, rl_set

VERL_TINY = {"engine": "verl", "critic": "separate", "batch_size": 2, "mini_batch_size": 2, "max_new_tokens": 8,
             "total_steps": 2, "save_every": 1, "max_prompt_length": 64}

# A stand-in for veRL's environment: records its argv; as the trainer it logs two steps to the file tracker and
# writes a sharded checkpoint's layout; as the model merger it writes a Hugging Face config.
STUB = textwrap.dedent('''\
    #!{python}
    import json, os, pathlib, shutil, sys
    args = sys.argv[1:]
    log = pathlib.Path(os.environ["STUB_LOG"]); log.write_text(log.read_text() + json.dumps(args) + "\\n" if log.exists() else json.dumps(args) + "\\n")
    if os.environ.get("STUB_FAIL"):
        print("Traceback (most recent call last):"); print("RuntimeError: No CUDA GPUs are available"); sys.exit(1)
    if args[:2] == ["-m", "r2_write.rl.verl.main"]:
        opts = dict(a.split("=", 1) for a in args[3:])
        ckpt = pathlib.Path(opts["trainer.default_local_dir"])
        (ckpt / "global_step_2" / "actor").mkdir(parents=True, exist_ok=True)
        (ckpt / "latest_checkpointed_iteration.txt").write_text("2")
        every = int(opts["trainer.test_freq"])  # the monitor: veRL's validation metrics every test_freq steps
        with open(os.environ["VERL_FILE_LOGGER_PATH"], "w") as f:
            for step in (1, 2):
                data = {{"critic/score/mean": 0.1 * step, "actor/ppo_kl": 0.01, "reward/format_violations": 1.0}}
                if every > 0 and step % every == 0:
                    data.update({{"timing_s/testing": 3.0, "val-core/r2_write_monitor/reward/mean@1": 0.0,
                                 "val-aux/r2_write_monitor/monitor_reward_score/mean@1": 6.0 + step,
                                 "val-aux/r2_write_monitor/monitor_eval_score/mean@1": 5.0,
                                 "val-aux/r2_write_monitor/monitor_gap/mean@1": 1.0 + step}})
                f.write(json.dumps({{"step": step, "data": data}}) + "\\n")
    elif args[:2] == ["-m", "verl.model_merger"]:
        target = pathlib.Path(args[args.index("--target_dir") + 1]); target.mkdir(parents=True)
        shutil.copy(os.environ["STUB_MODEL"] + "/config.json", target / "config.json")
''')


@pytest.fixture
def stub_python(tmp_path, monkeypatch, tiny_model_dir):
    path = tmp_path / "venv-verl" / "bin" / "python"
    path.parent.mkdir(parents=True)
    path.write_text(STUB.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("STUB_LOG", str(tmp_path / "stub.log"))
    monkeypatch.setenv("STUB_MODEL", tiny_model_dir)
    return path


def run_node(project_params, llm_params, tiny_model_dir, params):
    return train_ppo_policy(rl_set(project_params), SFT_SET, tiny_model_dir, params, llm_params, project_params["judge"],
                            project_params["generic_rubric"])


def test_a_missing_environment_stops_the_node_in_one_line(tmp_path, project_params, llm_params, tiny_model_dir):
    params = {**VERL_TINY, "output_dir": str(tmp_path / "ppo"), "verl": {"python": str(tmp_path / "nope" / "python")}}
    with pytest.raises(VerlError) as err:
        run_node(project_params, llm_params, tiny_model_dir, params)
    assert str(err.value) == (f"ppo.engine is verl but veRL's environment is missing ({tmp_path / 'nope' / 'python'} "
                              f"not found): build it with `make verl-env`, or set ppo.verl.python to its Python")
    assert not (tmp_path / "ppo").exists()  # stopped before writing anything


def test_a_failed_veRL_run_ends_the_node_with_its_cause(tmp_path, project_params, llm_params, tiny_model_dir, stub_python,
                                                         monkeypatch):
    monkeypatch.setenv("STUB_FAIL", "1")
    out = tmp_path / "ppo"
    with pytest.raises(VerlError) as err:
        run_node(project_params, llm_params, tiny_model_dir, {**VERL_TINY, "output_dir": str(out),
                                                             "verl": {"python": str(stub_python), "n_gpus_per_node": 1,
                                                                      "ulysses_sequence_parallel_size": 1}})
    assert str(err.value) == "ppo: veRL's PPO trainer failed (exit status 1): RuntimeError: No CUDA GPUs are available"
    assert "\n" not in str(err.value)


def test_the_node_writes_dataset_overrides_and_command_then_merges_the_actor(tmp_path, project_params, llm_params,
                                                                               tiny_model_dir, stub_python):
    out = tmp_path / "ppo"
    verl = {"python": str(stub_python), "n_gpus_per_node": 1, "ulysses_sequence_parallel_size": 1}
    model_dir, history, metrics = run_node(project_params, llm_params, tiny_model_dir,
                                           {**VERL_TINY, "output_dir": str(out), "verl": verl})
    run = out / "verl"
    data = pd.read_parquet(run / "train.parquet")
    assert list(data["extra_info"].map(lambda e: e["prompt_text"])) == list(rl_set(project_params)["prompt"])
    overrides = yaml.safe_load((run / "overrides.yaml").read_text())
    assert overrides["data.train_files"] == str((run / "train.parquet").resolve())
    assert overrides["reward.reward_manager.module.path"] == "pkg://r2_write.rl.verl.reward_manager"
    assert overrides["actor_rollout_ref.model.path"] == overrides["critic.model.path"] == str(Path(tiny_model_dir).resolve())
    command = json.loads((run / "command.json").read_text())
    assert command[:3] == [str(stub_python), "-m", "r2_write.rl.verl.main"]
    assert command[3] == f"--r2-spec={(run / 'spec.json').resolve()}"
    spec = json.loads((run / "spec.json").read_text())
    assert spec["process_weight"] == 0.5 and spec["eos_ids"] and spec["reward"]["kwargs"]["kind"] == "process"
    calls = [json.loads(line) for line in (tmp_path / "stub.log").read_text().splitlines()]
    assert calls[0] == command[1:]
    assert calls[1][:4] == ["-m", "verl.model_merger", "merge", "--backend"]
    assert (out / "final" / "config.json").exists()  # merged here, then stored as the finished training's model
    assert (Path(model_dir) / "config.json").exists() and (Path(model_dir) / "tokenizer_config.json").exists()
    # veRL's metrics come back under the own loop's names where they mean the same
    assert list(history["reward/mean"]) == [0.1, 0.2] and list(history["verl/actor/ppo_kl"]) == [0.01, 0.01]
    assert list(history["reward/format_violations"]) == [1.0, 1.0]
    assert {"ppo/reward/mean", "ppo/verl/actor/ppo_kl", "ppo/reward/format_violations"} <= set(metrics)


def test_run_streamed_names_a_command_that_cannot_start(tmp_path):
    with pytest.raises(VerlError, match=r"^veRL could not start \(/nonexistent/python\): "):
        run_streamed(["/nonexistent/python", "-V"], "veRL")


def test_an_rl_set_smaller_than_one_step_stops_before_veRL(tmp_path, project_params, llm_params, tiny_model_dir,
                                                             stub_python):
    params = {**VERL_TINY, "batch_size": 4, "mini_batch_size": 4, "output_dir": str(tmp_path / "ppo"),
              "verl": {"python": str(stub_python), "n_gpus_per_node": 1, "ulysses_sequence_parallel_size": 1}}
    with pytest.raises(VerlError, match=r"^ppo: the RL set has 2 prompts, fewer than one veRL step takes \(ppo\.batch_size"):
        run_node(project_params, llm_params, tiny_model_dir, params)
    assert not (tmp_path / "stub.log").exists()  # veRL never started


def test_the_ppo_pipeline_stops_in_seconds_without_veRLs_environment(tmp_path, tiny_model_dir, project_params,
                                                                     llm_params):
    """The pipeline as `kedro run --pipelines ppo` runs it (SequentialRunner, the catalog's inputs): one line, at once."""
    import time

    from kedro.runner import SequentialRunner

    from r2_write.pipelines.ppo import create_pipeline
    from tests.pipelines.training_inputs import rl_catalog

    params = {**VERL_TINY, "output_dir": str(tmp_path / "ppo"), "verl": {"python": ".venv-verl-missing/bin/python"}}
    catalog = rl_catalog(tiny_model_dir, project_params, llm_params, "ppo", params)
    start = time.perf_counter()
    with pytest.raises(VerlError, match=r"^ppo\.engine is verl but veRL's environment is missing \(\.venv-verl-missing/bin/"
                                        r"python not found\): build it with `make verl-env`"):
        SequentialRunner().run(create_pipeline(), catalog)
    assert time.perf_counter() - start < 10


def test_with_the_monitor_on_the_node_holds_out_prompts_and_logs_monitor_metrics(tmp_path, project_params, llm_params,
                                                                                tiny_model_dir, stub_python):
    """The held-out prompts become veRL's validation set (out of training), test_freq is monitor.every, and veRL's
    validation metrics come back as the own loop's monitor/* in the history and the MLflow metrics."""
    from r2_write.rl.monitor import MonitorParams, split_prompts

    out = tmp_path / "ppo"
    verl = {"python": str(stub_python), "n_gpus_per_node": 1, "ulysses_sequence_parallel_size": 1}
    params = {**VERL_TINY, "batch_size": 1, "mini_batch_size": 1, "output_dir": str(out), "verl": verl,
              "monitor": {"every": 2, "prompts": 1}}
    _, history, metrics = run_node(project_params, llm_params, tiny_model_dir, params)
    run = out / "verl"
    prompts = list(rl_set(project_params)["prompt"])
    train, _, held, _ = split_prompts(prompts, None, MonitorParams(every=2, prompts=1))
    assert [e["prompt_text"] for e in pd.read_parquet(run / "val.parquet")["extra_info"]] == held
    assert [e["prompt_text"] for e in pd.read_parquet(run / "train.parquet")["extra_info"]] == train
    overrides = yaml.safe_load((run / "overrides.yaml").read_text())
    assert overrides["trainer.test_freq"] == 2 and overrides["data.val_files"] == str((run / "val.parquet").resolve())
    assert history["monitor/gap"].isna().tolist() == [True, False] and history["monitor/gap"].iloc[1] == 3.0
    assert history["monitor/reward_score"].iloc[1] == 8.0 and history["time/monitor"].iloc[1] == 3.0
    assert [m["value"] for m in metrics["ppo/monitor/gap"]] == [3.0]
    assert not any("r2_write_monitor" in name for name in metrics)  # the empty reward sum of held-out answers is dropped
