"""The R2-Write reward: step rewards, token placement, judge batching, TRL contract."""

import pytest
from transformers import AutoTokenizer

from r2_write.rewards.process import (
    ProcessRewardConfig,
    outcome_reward_fn,
    process_reward_fn,
    step_rewards,
    token_rewards,
)
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


def test_step_rewards_gain_redundant_and_worse():
    cfg = ProcessRewardConfig(redundancy_penalty=0.2)
    # +2 -> 2/9; no change -> -0.2; a drop -> -0.2; +9 -> 1 (clipped at 1 by construction)
    assert step_rewards([4, 6, 7, 1], [6, 6, 5, 10], cfg) == pytest.approx([2 / 9, -0.2, -0.2, 1.0])


def test_step_rewards_min_gain_and_length_mismatch():
    cfg = ProcessRewardConfig(min_gain=1.0, redundancy_penalty=0.5)
    assert step_rewards([4, 4], [5, 5.5], cfg) == pytest.approx([-0.5, 1.5 / 9])
    with pytest.raises(ValueError, match="2 scores before but 1 after"):
        step_rewards([1, 2], [3], cfg)


def test_config_validation():
    with pytest.raises(ValueError, match="process_weight"):
        ProcessRewardConfig(process_weight=-1)
    with pytest.raises(ValueError, match="score_max"):
        ProcessRewardConfig(score_min=5, score_max=5)


def test_token_rewards_sit_on_step_ending_tokens(tokenizer):
    text = render(TRAJECTORY)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    offsets = [tuple(o) for o in offsets] + [(len(text), len(text))]  # + EOS, empty span
    cfg = ProcessRewardConfig(process_weight=0.5, redundancy_penalty=0.2)

    rewards = token_rewards(text, offsets, outcome_score=7.0, step_scores=[(4.0, 6.0), (6.0, 6.0)], cfg=cfg)

    assert len(rewards) == len(offsets)
    revision_ends = [end for kind, _, end in segment_spans(text) if kind == "revision"]
    step_tokens = [next(i for i, (s, e) in enumerate(offsets) if s < end <= e) for end in revision_ends]
    for i in step_tokens:  # the token holding the ">" of "</revision>"
        assert ">" in text[offsets[i][0] : offsets[i][1]]
        assert text[: offsets[i][1]].rstrip().endswith("</revision>")
    assert rewards[step_tokens[0]] == pytest.approx(0.5 * 2 / 9)
    assert rewards[step_tokens[1]] == pytest.approx(0.5 * -0.2)
    assert rewards[-1] == pytest.approx((7.0 - 1.0) / 9)  # normalised outcome on the last (EOS) token
    others = [r for i, r in enumerate(rewards) if i not in (*step_tokens, len(rewards) - 1)]
    assert others == [0.0] * len(others)


def test_token_rewards_outcome_only_ablation_and_malformed_text():
    offsets = [(0, 5), (5, 10)]
    text = render(TRAJECTORY)
    no_process = ProcessRewardConfig(process_weight=0.0)
    rewards = token_rewards(text, [(0, len(text))], 10.0, [(1, 9), (1, 9)], no_process)
    assert rewards == [1.0]
    # no <think> ... </think>: no steps, only the outcome
    assert token_rewards("plain text", offsets, 1.0, [], ProcessRewardConfig()) == [0.0, 0.0]
    with pytest.raises(ValueError, match="0 reflection->revision steps but 1"):
        token_rewards("plain text", offsets, 5.0, [(1, 2)], ProcessRewardConfig())


def test_process_reward_fn_one_batched_judge_call_with_dedup():
    judge = RecordingJudge()
    fn = process_reward_fn(judge, ProcessRewardConfig())
    completions = [render(TRAJECTORY), "no thinking here at all"]
    out = fn(["Write about the sea.", "Say hi."], completions, rubrics=["rubric-a", "rubric-b"])

    assert len(judge.calls) == 1
    prompts, texts, rubrics = judge.calls[0]
    # completion 0: answer (== last revision), draft, revision 1; completion 1: its answer
    assert sorted(texts) == sorted(
        ["The sea, restless slate, breathes.", "The sea is blue.", "The sea, a restless sheet of slate, breathes.",
         "no thinking here at all"]
    )
    assert rubrics[texts.index("no thinking here at all")] == "rubric-b"
    assert prompts[texts.index("The sea is blue.")] == "Write about the sea."

    first, second = out
    assert first["step_scores"] == [(5.0, 9.0), (9.0, 6.0)]  # 1 + word counts
    assert first["outcome"] == 6.0
    assert first["process"] == pytest.approx(4 / 9 - 0.2)
    assert first["n_reflections"] == 2
    assert second == {"outcome": 6.0, "step_scores": [], "process": 0, "n_reflections": 0}


def test_process_reward_fn_empty_answer_scores_minimum_without_a_call():
    judge = RecordingJudge()
    out = process_reward_fn(judge)(["p"], ["<think>\n<draft>\nd\n</draft>\n</think>\n"])
    assert out[0]["outcome"] == 1.0 and judge.calls == []


def test_outcome_reward_fn_strings_and_chat_messages():
    judge = RecordingJudge()
    fn = outcome_reward_fn(judge)
    text = render(TRAJECTORY)  # answer has 5 words -> score 6 -> (6-1)/9
    as_string = fn(prompts=["Write."], completions=[text])
    as_messages = fn(
        prompts=[[{"role": "system", "content": "s"}, {"role": "user", "content": "Write."}]],
        completions=[[{"role": "assistant", "content": text}]],
        rubrics=None,
        extra_column=[1],
    )
    assert as_string == as_messages == [pytest.approx(5 / 9)]
    assert judge.calls[1][0] == ["Write."]  # the user turn is what the judge sees
