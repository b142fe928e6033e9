"""The over-optimisation monitor (rl/monitor.py): held-out split, scoring, its typed settings per env, the
plot, and, end to end, a reward judge that a policy pleases without improving: the logged gap grows."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from r2_write.config import ConfigError, parse_params
from r2_write.rl.monitor import (
    MonitorJudges, MonitorParams, held_out_indices, monitor_metrics, score_answers, split_prompts,
)


def test_the_held_out_set_is_fixed_disjoint_and_leaves_training_prompts():
    prompts = [f"p{i}" for i in range(10)]
    train, train_rubrics, held, held_rubrics = split_prompts(prompts, [f"r{i}" for i in range(10)], MonitorParams(every=1, prompts=3))
    assert held == [prompts[i] for i in held_out_indices(10, 3)] and len(train) == 7
    assert not set(train) & set(held) and sorted(train + held) == sorted(prompts)
    assert [r[1:] for r in held_rubrics] == [p[1:] for p in held]  # rubrics travel with their prompts
    assert [r[1:] for r in train_rubrics] == [p[1:] for p in train]
    assert split_prompts(prompts, None, MonitorParams(every=1, prompts=3))[2] == held  # same set every time
    assert split_prompts(prompts, None, MonitorParams(every=0, prompts=3))[0] == prompts  # off: everything trains
    with pytest.raises(ValueError, match=r"ppo.monitor.prompts=10 .* none of the 10 RL prompts"):
        split_prompts(prompts, None, MonitorParams(every=1, prompts=10), "ppo.monitor")


def test_both_judges_score_the_final_answer_and_the_gap_is_reward_minus_eval():
    got = {}

    def reward(prompts, texts, rubrics):
        got["reward"] = texts
        return [8.0, 6.0]

    def evaluate(prompts, texts, rubrics):
        got["eval"] = texts
        return [5.0, 5.0]

    sums = score_answers(MonitorJudges(reward, evaluate), ["a", "b"],
                         ["<think>\n<draft>\nx\n</draft>\n</think>\nThe answer.", "No thinking at all."], [None, None])
    assert got["reward"] == got["eval"] == ["The answer.", "No thinking at all."]
    assert monitor_metrics(sums) == {"monitor/eval_score": 5.0, "monitor/reward_score": 7.0, "monitor/gap": 2.0}


def _env_params(project_root, env: str) -> dict:
    """The merged parameters of ``kedro run --env <env>`` (conf/base under conf/<env>)."""
    from kedro.config import OmegaConfigLoader

    from r2_write.settings import CONFIG_LOADER_ARGS

    return OmegaConfigLoader(str(project_root / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})["parameters"]


def _stage_configs(params: dict) -> dict:
    from r2_write.rl.ppo_config import PPOConfig
    from r2_write.training.grpo import GRPOParams

    ppo = {k: v for k, v in params["ppo"].items() if k not in ("launch", "reward")}
    grpo = {k: v for k, v in params["grpo"].items() if k != "launch"}
    return {"ppo": parse_params(PPOConfig, ppo, "ppo"), "grpo": parse_params(GRPOParams, grpo, "grpo")}


def test_kedro_run_env_paper_validates_with_the_monitor_on_and_base_has_it_off(project_root):
    from r2_write.roles import resolve_role

    paper = _env_params(project_root, "paper")
    for stage, cfg in _stage_configs(paper).items():
        assert cfg.monitor.enabled and cfg.monitor.every == 10 and cfg.monitor.prompts == 32, stage
    # the independent judge is another model than the one training optimises
    assert resolve_role(paper["llm"], "eval_judge") == "eval_judge"
    assert paper["llm"]["eval_judge"]["model"] != paper["llm"][resolve_role(paper["llm"], "reward_judge")]["model"]
    base = _env_params(project_root, "base")
    assert not any(cfg.monitor.enabled for cfg in _stage_configs(base).values())


@pytest.mark.parametrize("stage", ["ppo", "grpo"])
@pytest.mark.parametrize("bad, field", [({"every": -1}, "every"), ({"prompts": 0}, "prompts"),
                                        ({"every": 1.5}, "every"), ({"each": 3}, "each")])
def test_a_bad_monitor_setting_fails_with_one_line_naming_the_field(project_root, stage, bad, field):
    params = _env_params(project_root, "base")
    params = {**params, stage: {**params[stage], "monitor": bad}}
    with pytest.raises(ConfigError) as err:
        _stage_configs(params)
    lines = [ln for ln in str(err.value).splitlines() if ln.strip().startswith("parameter ")]
    assert len(lines) == 1 and f"'{stage}.monitor.{field}'" in lines[0]


def _history(gaps: list[float]) -> pd.DataFrame:
    nan = float("nan")
    return pd.DataFrame({
        "variant": "ppo", "reward/mean": [0.1, 0.2, 0.3, 0.4], "response/length_tokens": [10, 11, 12, 13],
        "monitor/reward_score": [nan, 6.0, nan, 8.0], "monitor/eval_score": [nan, 5.0, nan, 5.0], "monitor/gap": gaps,
    })


def test_the_stage_png_draws_the_monitor_beside_the_reward_curve():
    from r2_write.pipelines.ppo.nodes import plot_reward_and_length

    fig = plot_reward_and_length(_history([float("nan"), 1.0, float("nan"), 3.0]))
    axes = fig.get_axes()
    assert len(axes) == 3 and axes[0].get_title() == "Reward"
    lines = {ln.get_label(): ln for ln in axes[2].get_lines()}
    assert list(lines["ppo gap"].get_xdata()) == [2, 4] and list(lines["ppo gap"].get_ydata()) == [1.0, 3.0]
    assert list(lines["ppo eval judge"].get_ydata()) == [5.0, 5.0]
    assert list(lines["ppo reward judge"].get_ydata()) == [6.0, 8.0]
    # without a measurement (monitor off) the figure stays reward + length
    no_monitor = _history([float("nan")] * 4)
    assert len(plot_reward_and_length(no_monitor).get_axes()) == 2
    assert len(plot_reward_and_length(no_monitor.drop(columns=["monitor/gap"])).get_axes()) == 2


# ----------------------------------------------------------------------------- end to end (PPO, tiny model)

MONITOR_STEPS, EVERY = 6, 1


@pytest.mark.slow
def test_a_reward_judge_pleased_by_one_repeated_word_opens_the_logged_gap(peaked_policy, tmp_path):
    """The policy learns to emit the tokens the stub reward judge counts (a word repeated), which the eval judge
    does not reward: the reward judge's held-out score rises, the eval judge's does not, the gap grows.

    The stub reward judge: 1 + 9 x the share of a completion's tokens in S (the peaked policy's most frequent
    tokens); the eval judge: 1 + 9 x the share of *distinct* tokens (repetition is not writing). Logged through
    the trainer's ``log_fn`` (what the PPO node's MLflow run receives) and the history it returns.
    Measured (2-core CPU): reward score 3.53, 4.21, 4.60, 4.60, 4.60, 4.60 at steps 1-6, eval score 10.0 throughout
    (4 tokens are all distinct), so the gap grows by 1.07; the training reward/mean 0.60 -> 0.75. A monitor that
    sampled another model than the updated policy (with its fixed sampling seed) would log a constant gap.
    """
    from r2_write.rl.ppo_config import PPOConfig
    from r2_write.rl.trainer import train

    model_dir, tok, target = peaked_policy

    def ids_of(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    def reward_judge(prompts, texts, rubrics):
        return [1.0 + 9.0 * sum(i in target for i in ids) / len(ids) if ids else 1.0 for ids in map(ids_of, texts)]

    def eval_judge(prompts, texts, rubrics):
        return [1.0 + 9.0 * len(set(ids)) / len(ids) if ids else 1.0 for ids in map(ids_of, texts)]

    def reward_fn(prompts, completions, rubrics=None, truncated=None):
        return [{"outcome": s, "rewards": [], "process": 0.0, "n_reflections": 0, "n_steps": 0, "n_improved": 0,
                 "n_worsened": 0, "n_redundant": 0, "format_violation": None}
                for s in reward_judge(prompts, completions, rubrics)]

    prompts = [f"Write item {i} about topic {i % 7}." for i in range(32)] + [f"Describe thing {i}." for i in range(32)]
    cfg = PPOConfig(learning_rate=1e-4, critic_learning_rate=1e-3, batch_size=32, mini_batch_size=32, ppo_epochs=2,
                    kl_coef=0.0, process_weight=0.0, max_new_tokens=4, max_prompt_length=64, total_steps=MONITOR_STEPS,
                    seed=0, save_every=0, keep_checkpoints=0, output_dir=str(tmp_path / "ppo"),
                    monitor={"every": EVERY, "prompts": 32})
    logged = []
    out = train(model_dir, prompts, reward_fn, cfg, resume=False, log_fn=lambda m, step: logged.append((step, m)),
                monitor_judges=MonitorJudges(reward=reward_judge, eval=eval_judge))
    measured = [(step, m) for step, m in logged if "monitor/gap" in m]
    assert [step for step, _ in measured] == list(range(EVERY, MONITOR_STEPS + 1, EVERY))
    assert all(math.isfinite(m["monitor/gap"]) for _, m in measured)
    assert [m["monitor/gap"] for _, m in measured] == [h["monitor/gap"] for h in out["history"] if "monitor/gap" in h]
    first, last = measured[0][1], measured[-1][1]
    print(f"\nmonitor: {[(s, round(m['monitor/reward_score'], 3), round(m['monitor/eval_score'], 3)) for s, m in measured]}")
    assert last["monitor/reward_score"] > first["monitor/reward_score"]  # the reward judge is pleased more and more
    assert last["monitor/eval_score"] <= first["monitor/eval_score"]  # the independent judge sees no improvement
    assert last["monitor/gap"] > first["monitor/gap"] + 0.5


@pytest.fixture(scope="module")
def peaked_policy(tmp_path_factory, tiny_model_dir):
    """tests/rl/test_learning.py's policy: the tiny random Llama with its output layer x300 (peaked samples)."""
    from tests.rl import test_learning

    return test_learning.peaked_policy.__wrapped__(tmp_path_factory, tiny_model_dir)


def test_the_module_docstring_examples_hold():
    import doctest

    import r2_write.rl.monitor

    result = doctest.testmod(r2_write.rl.monitor)
    assert result.attempted >= 3 and result.failed == 0
