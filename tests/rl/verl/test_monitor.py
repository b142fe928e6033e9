"""The over-optimisation monitor under ``ppo.engine: verl``: veRL's validation on the held-out prompts.

* the held-out prompts are split as the own loop splits them (:func:`r2_write.rl.monitor.split_prompts`),
  written as veRL's validation set and taken out of its training set;
* the overrides with the monitor on compose against veRL's ``ppo_trainer.yaml`` and pass ``validate_config``;
* veRL's own ``RayPPOTrainer._validate`` (Ray calls made local, a stub rollout) sends the held-out
  answers through veRL's reward loop to our reward manager, which scores them with both monitor judges
  built from the run's reward spec; veRL's validation metrics then map to ``monitor/*``;
* the metric map produces ``monitor/*`` from a veRL metrics log line.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from r2_write.rewards.process import ProcessRewardConfig
from r2_write.rewards.spec import reward_spec
from r2_write.rl.monitor import MonitorParams, split_prompts
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.verl.dataset import MONITOR_SOURCE
from r2_write.rl.verl.launch import prepare_run
from r2_write.rl.verl.overrides import hydra_args, verl_overrides
from r2_write.rl.verl.rewards import rename_metrics, steps_from_log
from tests.fakes import FakeBackend, make_client, user_text
from tests.rl.verl.conftest import compose, local_reward_loop_manager

PROMPTS = [f"Write piece number {i}." for i in range(6)]
MONITOR = {"every": 2, "prompts": 3}
# The policy's answer to each prompt. The reward judge counts "shiny" in what it reads (a word a policy can
# repeat without writing better); the eval judge gives 2 to everything. The thinking holds "shiny" too: the
# judges must read only the final answer, as the own monitor does.
ANSWERS = {p: a for p, a in zip(PROMPTS, [
    "<think>\nshiny shiny shiny\n</think>\nA plain answer.",  # reward judge 1
    "<think>\nplan\n</think>\nshiny and shiny.",  # 7
    "shiny",  # no thinking: the whole text is the answer; 4
    "<think>\nplan\n</think>\nshiny shiny shiny.",  # 10
    "<think>\nplan\n</think>\nNothing.",  # 1
    "<think>\nplan\n</think>\nshiny.",  # 4
])}
REWARD_JUDGE = {p: min(10, 1 + 3 * a.split("</think>")[-1].count("shiny")) for p, a in ANSWERS.items()}
EVAL_SCORE = 2


def _score(score: int) -> str:
    return '{"score": %d, "reason": "r"}' % score


@pytest.fixture
def judges(monkeypatch):
    """reward_judge and eval_judge as two scripted clients (``r2_write.roles.get_client`` by role)."""
    def reward_respond(conv, sampling):
        return _score(min(10, 1 + 3 * user_text(conv).split("[Response]")[1].count("shiny")))

    clients = {"reward_judge": make_client(FakeBackend(respond=reward_respond)),
               "eval_judge": make_client(FakeBackend(respond=lambda conv, sampling: _score(EVAL_SCORE)))}
    monkeypatch.setattr("r2_write.roles.get_client", lambda cfg, role=None, **kw: clients[role])
    return clients


@pytest.fixture
def monitor_llm() -> dict:
    role = {"backend": "transformers", "model": "fake-model", "cache_path": None}
    return {"judge": dict(role), "reward_judge": dict(role), "eval_judge": {**role, "model": "fake-eval-model"},
            "policy": dict(role)}


def monitor_cfg(**changes) -> PPOConfig:
    return PPOConfig(**{"engine": "verl", "critic": "separate", "batch_size": 2, "mini_batch_size": 2,
                        "max_new_tokens": 64, "max_prompt_length": 64, "total_steps": 4, "temperature": 0.7,
                        "top_k": 20, "top_p": 0.9, "monitor": MONITOR,
                        "verl": {"n_gpus_per_node": 1, "ulysses_sequence_parallel_size": 1, "use_dynamic_bsz": False},
                        **changes})


def test_the_held_out_prompts_are_veRLs_validation_set_and_out_of_its_training_set(tmp_path, tiny_model_dir,
                                                                                    embedded_model_dir):
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    cfg = monitor_cfg(output_dir=str(tmp_path / "ppo"))
    rubrics = [[{"name": f"C{i}"}] for i in range(len(PROMPTS))]
    _, run_dir = prepare_run(tiny_model_dir, PROMPTS, rubrics, cfg, ProcessRewardConfig(), {"function": "x:y"})
    train, val = pd.read_parquet(run_dir / "train.parquet"), pd.read_parquet(run_dir / "val.parquet")
    train_p, _, held_p, held_r = split_prompts(PROMPTS, rubrics, MonitorParams(**MONITOR))  # the own loop's split
    assert [e["prompt_text"] for e in val["extra_info"]] == held_p and len(held_p) == 3
    assert [e["prompt_text"] for e in train["extra_info"]] == train_p
    assert not set(held_p) & set(train_p)
    assert set(val["data_source"]) == {MONITOR_SOURCE} and set(train["data_source"]) == {"r2_write"}
    assert [json.loads(e["criteria"]) for e in val["extra_info"]] == held_r
    overrides = yaml_overrides(run_dir)
    assert overrides["data.val_files"] == str((run_dir / "val.parquet").resolve())
    assert overrides["trainer.test_freq"] == 2 and overrides["trainer.val_before_train"] is False
    data_cfg = compose(["data.max_prompt_length=64", f"data.val_files={run_dir / 'val.parquet'}"]).data
    OmegaConf.set_struct(data_cfg, False)
    data_cfg.cache_dir = str(tmp_path / "cache")
    dataset = RLHFDataset(data_files=[str(run_dir / "val.parquet")],
                          tokenizer=AutoTokenizer.from_pretrained(embedded_model_dir), config=data_cfg)
    assert [dataset[i]["extra_info"]["prompt_text"] for i in range(len(dataset))] == held_p

    off = prepare_run(tiny_model_dir, PROMPTS, rubrics, monitor_cfg(output_dir=str(tmp_path / "ppo"), monitor={"every": 0}),
                      ProcessRewardConfig(), {"function": "x:y"})[1]
    assert len(pd.read_parquet(off / "train.parquet")) == len(PROMPTS) and not (off / "val.parquet").exists()


def test_the_monitor_overrides_compose_and_pass_veRLs_validation(embedded_model_dir):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    cfg = monitor_cfg()
    overrides = verl_overrides(cfg, policy_dir=str(embedded_model_dir), train_file="/d/train.parquet",
                               checkpoint_dir="/c", n_prompts=3, val_file="/d/val.parquet")
    config = compose(hydra_args(overrides))
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert config.trainer.test_freq == 2 and config.trainer.val_before_train is False
    assert config.data.val_files == "/d/val.parquet"
    val = config.actor_rollout_ref.rollout.val_kwargs  # sampled as the training rollouts, one answer per prompt
    assert (val.temperature, val.top_k, val.top_p, val.n, val.do_sample) == (0.7, 20, 0.9, 1, True)
    off = compose(hydra_args(verl_overrides(monitor_cfg(monitor={"every": 0}), policy_dir="/m", train_file="/d/t.parquet",
                                            checkpoint_dir="/c", n_prompts=3)))
    assert off.trainer.test_freq == -1
    with pytest.raises(ValueError, match="needs val_file"):
        verl_overrides(cfg, policy_dir="/m", train_file="/d/t.parquet", checkpoint_dir="/c", n_prompts=3)


def _stub_rollout(tokenizer, eos: int):
    """veRL's agent-loop output for a generation batch: left-padded prompts, right-padded answers + EOS, and the
    input's non-tensor fields (what the agent loop passes on when the reward runs outside it)."""
    from verl import DataProto

    def generate_sequences(gen_batch):
        texts = [extra["prompt_text"] for extra in gen_batch.non_tensor_batch["extra_info"]]
        prompts = [tokenizer.apply_chat_template(list(m), add_generation_prompt=True, tokenize=True)
                   for m in gen_batch.non_tensor_batch["raw_prompt"]]
        prompts = [p if isinstance(p, list) else p["input_ids"] for p in prompts]
        answers = [tokenizer(ANSWERS[t], add_special_tokens=False)["input_ids"] + [eos] for t in texts]
        pw, rw = max(map(len, prompts)), max(map(len, answers)) + 3
        prompt_t = torch.tensor([[eos] * (pw - len(p)) + p for p in prompts])
        resp_t = torch.tensor([a + [eos] * (rw - len(a)) for a in answers])
        mask = torch.tensor([[0] * (pw - len(p)) + [1] * len(p) + [1] * len(a) + [0] * (rw - len(a))
                             for p, a in zip(prompts, answers)])
        return DataProto.from_dict(
            tensors={"prompts": prompt_t, "responses": resp_t, "input_ids": torch.cat([prompt_t, resp_t], 1),
                     "attention_mask": mask, "response_mask": mask[:, pw:]},
            non_tensors=dict(gen_batch.non_tensor_batch))

    return generate_sequences


def test_veRLs_validation_scores_the_held_out_answers_with_both_judges_as_monitor_metrics(
        tmp_path, tiny_model_dir, project_params, monitor_llm, judges, monkeypatch):
    from torchdata.stateful_dataloader import StatefulDataLoader
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    from r2_write.rl.verl.launch import eos_ids
    from r2_write.rl.verl.main import ProcessRewardTrainer

    cfg = monitor_cfg(output_dir=str(tmp_path / "ppo"))
    judge = {**project_params["judge"], "mode": "generate"}
    spec = reward_spec(monitor_llm, judge, project_params["generic_rubric"])
    command, run_dir = prepare_run(tiny_model_dir, PROMPTS, [None] * len(PROMPTS), cfg, ProcessRewardConfig(), spec)
    monkeypatch.setenv("R2_VERL_SPEC", str(run_dir / "spec.json"))
    overrides = yaml_overrides(run_dir)
    overrides["reward.num_workers"] = 1
    config = compose(hydra_args(overrides))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    data_cfg = OmegaConf.create(OmegaConf.to_container(config.data, resolve=True))
    data_cfg.cache_dir = str(tmp_path / "cache")
    val_set = RLHFDataset(data_files=[config.data.val_files], tokenizer=tokenizer, config=data_cfg)
    manager = local_reward_loop_manager(config, monkeypatch)
    trainer = ProcessRewardTrainer.__new__(ProcessRewardTrainer)  # veRL's trainer without its Ray workers
    trainer.config, trainer.tokenizer, trainer.use_rm, trainer.global_steps = config, tokenizer, True, 2
    trainer.val_dataloader = StatefulDataLoader(val_set, batch_size=len(val_set), collate_fn=collate_fn)
    trainer.async_rollout_manager = SimpleNamespace(generate_sequences=_stub_rollout(tokenizer, eos_ids(tiny_model_dir)[0]))
    trainer.checkpoint_manager = SimpleNamespace(sleep_replicas=lambda: None, update_weights=lambda step: None)
    trainer.reward_loop_manager = manager

    val_metrics = trainer._validate()
    metrics = rename_metrics(val_metrics)
    held = split_prompts(PROMPTS, None, MonitorParams(**MONITOR))[2]
    reward_score = sum(REWARD_JUDGE[p] for p in held) / len(held)
    assert reward_score != EVAL_SCORE  # the gap is not 0 by construction
    assert metrics == pytest.approx({"monitor/reward_score": reward_score, "monitor/eval_score": float(EVAL_SCORE),
                                     "monitor/gap": reward_score - EVAL_SCORE})
    # both judges were asked, each about the held-out answers only (every criterion of the generic rubric)
    n_criteria = len(project_params["generic_rubric"])
    assert judges["eval_judge"].backend.n_generated >= len(held) * n_criteria
    assert judges["reward_judge"].backend.n_generated >= len(held) * n_criteria
    asked = {user_text(c) for b in judges["eval_judge"].backend.batches for c in b}
    assert all(any(ANSWERS[p].split("</think>")[-1].strip() in a for a in asked) for p in held)
    assert not any("shiny shiny shiny\n" in a for a in asked)  # the thinking is never judged

    trainer.global_steps = 3  # veRL validates after a last step off the grid; the own monitor does not
    assert trainer._validate() == {}


def yaml_overrides(run_dir) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "overrides.yaml").read_text())


def test_the_metric_map_gives_monitor_metrics_from_a_veRL_log_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(json.dumps(line) for line in [
        {"step": 1, "data": {"critic/score/mean": 0.2}},
        {"step": 2, "data": {"critic/score/mean": 0.3, "timing_s/testing": 41.5,
                             f"val-core/{MONITOR_SOURCE}/reward/mean@1": 0.0,
                             f"val-aux/{MONITOR_SOURCE}/monitor_reward_score/mean@1": 6.5,
                             f"val-aux/{MONITOR_SOURCE}/monitor_eval_score/mean@1": 4.0,
                             f"val-aux/{MONITOR_SOURCE}/monitor_gap/mean@1": 2.5}},
    ]) + "\n")
    steps = steps_from_log(log)
    assert steps[1] == {"reward/mean": 0.2}
    assert steps[2] == {"reward/mean": 0.3, "time/monitor": 41.5, "monitor/reward_score": 6.5,
                        "monitor/eval_score": 4.0, "monitor/gap": 2.5}


def test_the_held_out_prompts_count_against_one_veRL_step(tmp_path, tiny_model_dir):
    """6 prompts, 3 held out: 3 left, fewer than the 4 prompts one step takes."""
    from r2_write.rl.verl.launch import VerlError

    cfg = monitor_cfg(output_dir=str(tmp_path / "ppo"), batch_size=4, mini_batch_size=4)
    with pytest.raises(VerlError, match=r"^ppo: the RL set has 3 training prompts \(after the 3 the monitor holds out\), "
                                        r"fewer than one veRL step takes"):
        prepare_run(tiny_model_dir, PROMPTS, [None] * len(PROMPTS), cfg, ProcessRewardConfig(), {"function": "x:y"})


def test_veRLs_fit_validates_on_the_lines_the_monitor_relies_on():
    """fit validates every test_freq steps (and after the last), not before training when val_before_train is false;
    _validate rewards through compute_rm_score with use_rm. A veRL that moves these lines fails here, not on a GPU."""
    import inspect

    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    fit, validate = inspect.getsource(RayPPOTrainer.fit), inspect.getsource(RayPPOTrainer._validate)
    assert 'if self.config.trainer.get("val_before_train", True):' in fit
    assert "is_last_step or self.global_steps % self.config.trainer.test_freq == 0" in fit
    assert 'with marked_timer("testing", timing_raw' in fit  # -> timing_s/testing -> time/monitor
    assert 'if self.use_rm and "rm_scores" not in test_output_gen_batch_padded.batch.keys():' in validate
    assert "reward_tensor, reward_extra_info = extract_reward(test_batch)" in validate
