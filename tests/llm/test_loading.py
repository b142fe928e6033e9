"""r2_write.llm.loading: the one loader of local tokenizers and models."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from r2_write.llm.base import LLMError
from r2_write.llm.loading import load_backbone, load_causal_lm, load_tokenizer


def test_a_missing_directory_is_one_line_naming_it_and_make_model(tmp_path):
    with pytest.raises(LLMError, match=r"model directory '.*nowhere' does not exist; run `make model`"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(LLMError, match="does not exist"):
        load_causal_lm(tmp_path / "nowhere")


def test_a_tokenizer_without_pad_pads_with_its_end_token(tiny_model_dir, tmp_path):
    no_pad = tmp_path / "no_pad"
    shutil.copytree(tiny_model_dir, no_pad)
    cfg_file = no_pad / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg.pop("pad_token", None)
    cfg_file.write_text(json.dumps(cfg))
    special = no_pad / "special_tokens_map.json"
    if special.exists():
        data = json.loads(special.read_text())
        data.pop("pad_token", None)
        special.write_text(json.dumps(data))
    tok = load_tokenizer(no_pad, padding_side="left")
    assert tok.pad_token_id == tok.eos_token_id is not None and tok.padding_side == "left"


def test_models_load_float32_by_default_and_a_stale_gguf_config_is_dropped(tiny_model_dir, tmp_path):
    stale = tmp_path / "stale"
    shutil.copytree(tiny_model_dir, stale)
    config = json.loads((stale / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gguf"}
    (stale / "config.json").write_text(json.dumps(config))
    lm = load_causal_lm(stale)
    assert next(lm.parameters()).dtype == torch.float32
    assert getattr(lm.config, "quantization_config", None) is None  # saves again with save_pretrained
    lm.save_pretrained(tmp_path / "resaved")
    assert load_causal_lm(tiny_model_dir, dtype="bfloat16").dtype == torch.bfloat16
    backbone = load_backbone(tiny_model_dir)
    assert not hasattr(backbone, "lm_head") and next(backbone.parameters()).dtype == torch.float32
