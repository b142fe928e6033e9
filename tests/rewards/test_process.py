"""The R2-Write reward: step rewards, token placement, judge batching, TRL contract."""

import pytest
from transformers import AutoTokenizer

from r2_write.rewards.process import (
    ProcessRewardConfig,
    outcome_reward_fn,
    process_reward_fn,
    token_rewards,
    version_rewards,
)
from r2_write.rl.ppo_config import PPOConfig
from r2_write.trajectory import Segment, Trajectory, render, segment_spans

MODEL_DIR = "data/06_models/base_model"

TRAJECTORY = Trajectory(
    [
        Segment("plan", "Outline: one image, one turn."),
        Segment("draft", "The sea is blue."),
        Segment("reflection", "The draft lacks imagery because it only names a colour."),
        Segment("revision", "The sea, a restless sheet of slate, breathes."),
        Segment("reflection", "Could the rhythm be tighter?"),
        Segment("revision", "The sea, restless slate, breathes."),
    ],
    answer="The sea, restless slate, breathes.",
)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(MODEL_DIR)


class RecordingJudge:
    """Fake judge: score = min(10, 1 + words); records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, texts, rubrics):
        self.calls.append((list(prompts), list(texts), list(rubrics)))
        return [min(10.0, 1.0 + len(t.split())) for t in texts]


def test_version_rewards_against_the_last_credited_version():
    cfg = ProcessRewardConfig(redundancy_penalty=0.02, step_cost=0.0, min_gain=0.18)
    got = version_rewards([4, 6, 6, 5, 10], cfg)
    assert [v.kind for v in got] == ["draft", "improved", "redundant", "worsened", "improved"]
    assert [v.reward for v in got] == pytest.approx([3 / 9, 2 / 9, -0.02, -0.02, 4 / 9])  # 10 vs best 6, not vs 5


def test_version_rewards_are_capped_at_the_answer():
    cfg = ProcessRewardConfig(redundancy_penalty=0.02, step_cost=0.0, min_gain=0.18)
    got = version_rewards([4, 9, 10, 7], cfg, answer=7)  # versions above the answer count at 7
    assert [v.kind for v in got] == ["draft", "improved", "redundant", "worsened"]
    assert [v.reward for v in got] == pytest.approx([3 / 9, 3 / 9, -0.02, -0.02])
    below = version_rewards([8, 9], cfg, answer=5)  # a draft above the answer anchors at the answer
    assert [v.reward for v in below] == pytest.approx([4 / 9, -0.02])


def test_version_rewards_min_gain_and_unjudged_versions():
    cfg = ProcessRewardConfig(min_gain=1.0, redundancy_penalty=0.1, step_cost=0.0)
    got = version_rewards([4, 5, 6.5, None, 4, 4, 4, 4, 4, 4, 4], cfg)  # 6.5 beats the last credited (4) by 2.5
    assert [v.kind for v in got] == ["draft", "redundant", "improved", "redundant"] + ["worsened"] * 7
    assert [v.reward for v in got] == pytest.approx([3 / 9, -0.1, 2.5 / 9] + [-0.1] * 8)  # penalties never stop
    assert [v.kind for v in version_rewards([None, 8], cfg)] == ["draft", "no_draft"]
    assert [v.kind for v in version_rewards([8, 9], cfg, has_draft=False)] == ["no_draft", "no_draft"]


def test_config_validation():
    with pytest.raises(ValueError, match="process_weight"):
        PPOConfig(process_weight=-1)
    with pytest.raises(ValueError, match="process_weight must be in \\[0, 1\\]"):
        PPOConfig(process_weight=1.5)
    with pytest.raises(ValueError, match="process_weight"):  # lambda's one home is PPOConfig (ppo.process_weight)
        ProcessRewardConfig(process_weight=0.5)
    with pytest.raises(ValueError, match="redundancy_penalty"):
        ProcessRewardConfig(redundancy_penalty=-0.1)
    with pytest.raises(ValueError, match="score_max"):
        ProcessRewardConfig(score_min=5, score_max=5)
    with pytest.raises(ValueError, match="max_steps"):
        ProcessRewardConfig(max_steps=-1)
    with pytest.raises(ValueError, match=r"format_penalty \(1\) must exceed max_steps"):  # 40 x 0.025 = 1
        ProcessRewardConfig(max_steps=40)
    with pytest.raises(ValueError, match="max_total_penalty"):  # replaced by max_steps
        ProcessRewardConfig(max_total_penalty=1.0)
    assert ProcessRewardConfig(min_gain=0.0, redundancy_penalty=0.0, step_cost=0.0).min_gain == 0.0


def test_lambda_and_the_penalties_must_let_a_real_improvement_pay():
    assert ProcessRewardConfig().weight_problem(1.0) is None  # the defaults, at every lambda <= 1
    assert ProcessRewardConfig(step_cost=0.01).weight_problem(0.5) is None  # 0.0278 >= 0.5 x 0.03
    assert "0.03" in ProcessRewardConfig(step_cost=0.01).weight_problem(1.0)  # 0.0278 < 1 x 0.03
    assert ProcessRewardConfig(min_gain=0.0).weight_problem(0.0) is None  # outcome-only ablation


def test_token_rewards_sit_on_version_ending_tokens(tokenizer):
    text = render(TRAJECTORY)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    offsets = [tuple(o) for o in offsets] + [(len(text), len(text))]  # + EOS, empty span
    cfg = ProcessRewardConfig()
    result = process_reward_fn(RecordingJudge(), cfg)(["Write about the sea."], [text])[0]

    rewards = token_rewards(offsets, result, cfg, process_weight=0.5)

    assert len(rewards) == len(offsets)
    ends = [end for kind, _, end in segment_spans(text) if kind in ("draft", "revision")]
    version_tokens = [next(i for i, (s, e) in enumerate(offsets) if s < end <= e) for end in ends]
    for i in version_tokens:  # the token holding the ">" of "</draft>" / "</revision>"
        assert ">" in text[offsets[i][0] : offsets[i][1]]
        assert text[: offsets[i][1]].rstrip().endswith(("</draft>", "</revision>"))
    # scores 1 + words: draft 5, revision 9 (improved, counted at the answer's 6), revision 6 (worse than 9)
    assert [rewards[i] for i in version_tokens] == pytest.approx(
        [0.5 * 4 / 9, 0.5 * (1 / 9 - cfg.step_cost), -0.5 * (cfg.redundancy_penalty + cfg.step_cost)]
    )
    assert rewards[-1] == pytest.approx((6.0 - 1.0) / 9)  # normalised outcome on the last (EOS) token
    others = [r for i, r in enumerate(rewards) if i not in (*version_tokens, len(rewards) - 1)]
    assert others == [0.0] * len(others)


def test_token_rewards_outcome_only_ablation_and_format_penalty():
    text = render(TRAJECTORY)
    result = process_reward_fn(RecordingJudge())(["p"], [text])[0]
    no_process = ProcessRewardConfig()
    assert token_rewards([(0, 10), (10, len(text))], result, no_process, 0.0) == [0.0, pytest.approx(5 / 9)]
    malformed = process_reward_fn(RecordingJudge())(["p"], ["plain text"])[0]
    assert malformed["format_violation"] == "does not start with <think>"
    assert token_rewards([(0, 5), (5, 10)], malformed, ProcessRewardConfig(format_penalty=0.7), 0.5) == [0.0, -0.7]
    assert token_rewards([], result, no_process, 0.0) == []


def test_process_reward_fn_one_batched_judge_call_with_dedup():
    judge = RecordingJudge()
    fn = process_reward_fn(judge, ProcessRewardConfig())
    completions = [render(TRAJECTORY), "no thinking here at all"]
    out = fn(["Write about the sea.", "Say hi."], completions, rubrics=["rubric-a", "rubric-b"])

    assert len(judge.calls) == 1
    prompts, texts, rubrics = judge.calls[0]
    # completion 0: answer (== last revision), draft, revision 1; completion 1 is malformed: not judged
    assert sorted(texts) == sorted(
        ["The sea, restless slate, breathes.", "The sea is blue.", "The sea, a restless sheet of slate, breathes."]
    )
    assert set(rubrics) == {"rubric-a"}
    assert prompts[texts.index("The sea is blue.")] == "Write about the sea."

    first, second = out
    assert first["version_scores"] == [5.0, 9.0, 6.0]  # 1 + word counts
    assert first["outcome"] == 6.0
    cfg = ProcessRewardConfig()
    # the revision judged 9 counts at the answer's 6: nothing beyond the answer is credited
    assert first["process"] == pytest.approx(4 / 9 + 1 / 9 - cfg.step_cost - cfg.redundancy_penalty - cfg.step_cost)
    assert (first["n_reflections"], first["n_steps"], first["n_improved"], first["n_redundant"], first["n_worsened"]) == (
        2, 2, 1, 1, 1)
    assert second["outcome"] is None and second["format_violation"] == "does not start with <think>"


def test_process_reward_fn_malformed_completions_are_not_judged():
    judge = RecordingJudge()
    out = process_reward_fn(judge)(["p", "p"], ["<think>\n<draft>\nd\n</draft>\n</think>\n", render(TRAJECTORY)],
                                   truncated=[False, True])
    assert [o["format_violation"] for o in out] == ["empty answer", "truncated at max_new_tokens"]
    assert judge.calls == []


def test_outcome_reward_fn_strings_and_chat_messages():
    judge = RecordingJudge()
    fn = outcome_reward_fn(judge)
    text = render(TRAJECTORY)  # answer has 5 words -> score 6 -> (6-1)/9
    as_string = fn(prompts=["Write."], completions=[text])
    assert fn(prompts=["Write."], completions=[text], truncated=[True]) == [-1.0]
    as_messages = fn(
        prompts=[[{"role": "system", "content": "s"}, {"role": "user", "content": "Write."}]],
        completions=[[{"role": "assistant", "content": text}]],
        rubrics=None,
        extra_column=[1],
    )
    assert as_string == as_messages == [pytest.approx(5 / 9)]
    assert judge.calls[1][0] == ["Write."]  # the user turn is what the judge sees


def test_a_text_the_judge_cannot_score_counts_as_the_worst_score():
    """None / NaN / inf / non-numbers from judge_fn: score_min, counted in n_unscored; never an exception."""
    bad = iter([None, float("nan"), "n/a", float("inf")])
    text = render(TRAJECTORY)  # answer == the last revision: 3 distinct texts

    def judge(prompts, texts, rubrics):
        return [next(bad) if t != "The sea is blue." else 7.0 for t in texts]

    res = process_reward_fn(judge)(["p"], [text])[0]
    assert res["outcome"] == 1.0 and res["version_scores"] == [7.0, 1.0, 1.0]
    assert res["n_unscored"] == 3  # revision 1, revision 2 and the answer (one text, counted per use)
    assert outcome_reward_fn(lambda p, t, r: [None] * len(t))(["p"], [text]) == [0.0]


def test_the_ppo_node_rejects_a_lambda_the_penalties_outweigh_at_load():
    import pandas as pd

    from r2_write.config import ConfigError
    from r2_write.pipelines.ppo.nodes import train_ppo_policy

    rl_set = pd.DataFrame({"prompt": ["Write."], "criteria": [None]})
    params = {"process_weight": 1.0, "reward": {"step_cost": 0.01}}  # 0.25 / 9 < 1 x (0.02 + 0.01)
    with pytest.raises(ConfigError, match=r"ppo\.reward.*min_gain / \(score_max - score_min\)"):
        train_ppo_policy(rl_set, pd.DataFrame(), "no-model", params, {}, {}, [], variant="ppo")
