"""The policy's prompt has one home: SFT examples, PPO rollouts and WritingBench responses all use it."""

import pandas as pd

from r2_write.llm.config import SamplingParams
from r2_write.prompts.policy import policy_messages


def test_the_request_is_the_only_user_message():
    assert policy_messages("Write a haiku.") == [{"role": "user", "content": "Write a haiku."}]


def test_sft_examples_prompt_the_policy_with_it():
    from r2_write.training.sft import to_chat_examples

    example = to_chat_examples(["Write a haiku."], ["<think>..</think>A"])[0]
    assert example["prompt"] == policy_messages("Write a haiku.")


def test_writingbench_responses_are_requested_with_it(fake_client):
    from r2_write.evaluation.writingbench import generate_responses

    queries = pd.DataFrame({"id": ["1", "2"], "domain": ["d", "d"], "query": ["Write a poem.", "Write a memo."]})
    generate_responses(fake_client, queries, SamplingParams())
    assert fake_client.backend.batches[0] == [policy_messages("Write a poem."), policy_messages("Write a memo.")]


def test_ppo_rollout_prompts_are_its_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    from r2_write.rl.rollout import encode_prompts

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, mask = encode_prompts(tokenizer, ["Write a haiku."], max_length=256)
    text = tokenizer.apply_chat_template(policy_messages("Write a haiku."), tokenize=False, add_generation_prompt=True)
    assert ids[0].tolist() == tokenizer(text, add_special_tokens=False)["input_ids"] and mask.all()
