"""Inputs of the training pipeline tests (sft, ppo, ppo_outcome, grpo): tiny SFT and RL sets, a catalog, a weight check."""

from __future__ import annotations

import json

import pandas as pd
import torch
from transformers import AutoModelForCausalLM

from r2_write.rubrics.schema import generic_rubric
from tests.pipelines.conftest import memory_catalog

# SFT trajectories short enough for PPO_TINY's 8-token budget (the length budget check passes)
SFT_SET = pd.DataFrame({"prompt": ["Write a haiku.", "Write a memo."], "completion": ["A haiku.", "A memo."]})


PPO_TINY = {"batch_size": 2, "mini_batch_size": 2, "max_new_tokens": 8, "total_steps": 2, "save_every": 1, "learning_rate": 1e-3}


def weights_equal(a: str, b: str) -> bool:
    ma, mb = AutoModelForCausalLM.from_pretrained(a), AutoModelForCausalLM.from_pretrained(b)
    return all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))


def rl_set(project_params) -> pd.DataFrame:
    crit = json.dumps([c.to_row() for c in generic_rubric(project_params["generic_rubric"])])
    return pd.DataFrame({"id": ["r1", "r2"], "prompt": ["Plan a lesson on tides.", "Write an ad."], "criteria": [crit] * 2})


def rl_catalog(tiny_model_dir, project_params, llm_params, variant, extra):
    return memory_catalog({
        "scoring.rl_set": rl_set(project_params), "scoring.sft_set": SFT_SET, "sft.model": tiny_model_dir,
        f"params:{variant}": extra, "params:llm": llm_params,
        "params:judge": {**project_params["judge"], "mode": "generate"},
        "params:generic_rubric": project_params["generic_rubric"],
    }, keep=(f"{variant}.history",))

