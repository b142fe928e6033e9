"""The written RL set loads with veRL's RLHFDataset and the embedded tokenizer."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from r2_write.prompts.policy import policy_messages
from r2_write.rl.verl.dataset import write_rl_set
from tests.rl.verl.conftest import compose

PROMPTS = ["Plan a lesson on tides.", "Write an ad.", "Write a memo."]
RUBRICS = ['[{"name": "Clarity"}]', [{"name": "Tone", "description": "warm"}], None]


def test_rl_set_loads_with_veRLs_dataset(tmp_path, embedded_model_dir):
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    path = write_rl_set(PROMPTS, RUBRICS, tmp_path / "train.parquet")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    data_cfg = compose(["data.max_prompt_length=64", "data.truncation=left", "data.filter_overlong_prompts=true",
                        "data.filter_overlong_prompts_workers=1", f"data.train_files={path}"]).data
    OmegaConf.set_struct(data_cfg, False)
    data_cfg.cache_dir = str(tmp_path / "cache")
    dataset = RLHFDataset(data_files=[str(path)], tokenizer=tokenizer, config=data_cfg)
    assert len(dataset) == len(PROMPTS)  # none filtered as overlong
    for i, prompt in enumerate(PROMPTS):
        item = dataset[i]
        assert list(item["raw_prompt"]) == policy_messages(prompt)
        assert item["extra_info"]["prompt_text"] == prompt
        assert json.loads(item["extra_info"]["criteria"]) == RUBRICS[i]
        assert item["data_source"] == "r2_write"
