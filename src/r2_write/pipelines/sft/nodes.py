"""SFT nodes: fine-tune the base model on the SFT set with TRL."""

from __future__ import annotations

import logging

import pandas as pd

from r2_write.config import parse_params
from r2_write.llm.cache import model_identity
from r2_write.tracking import mlflow_metric_history
from r2_write.training.launch import launch_sft, parse_launch
from r2_write.training.sft import SFTParams, overlong_examples, train_sft
from r2_write.training.stage import Stage, train_stage

logger = logging.getLogger(__name__)


def train_sft_model(sft_set: pd.DataFrame, base_model: str, params: dict) -> tuple[str, dict]:
    """Supervised fine-tuning on (prompt -> trajectory + final answer).

    Args:
        sft_set: ``scoring.sft_set`` (columns prompt, completion).
        base_model: Directory of the starting checkpoint.
        params: ``params:sft`` (``launch``: train in ``accelerate launch`` processes,
            :mod:`r2_write.training.launch`).

    Returns:
        (directory of the trained model, saved as the versioned ``sft.model``; loss curve metrics).
    """
    params = dict(params or {})
    launch = parse_launch(params.pop("launch", None), "sft.launch")
    cfg = parse_params(SFTParams, params, "sft")
    data = _within_max_length(list(sft_set["prompt"]), list(sft_set["completion"]), base_model, cfg)

    def in_process(output_dir: str, _log) -> tuple[str, dict]:
        model_dir, history = train_sft(base_model, *data, cfg.model_copy(update={"output_dir": output_dir}))
        return model_dir, {"history": history}

    def launched(launch_, output_dir: str) -> tuple[str, dict]:
        model_dir, history = launch_sft(launch_, base_model, *data, cfg.model_copy(update={"output_dir": output_dir}))
        return model_dir, {"history": history}

    parts = {"settings": cfg.model_dump(), "launch": launch, "data": data, "base": model_identity(base_model)}
    run = train_stage(Stage("sft", parts, in_process, launched, launch, cfg.output_dir, cfg.reuse_trained))
    curves = [{"sft/loss": h["loss"], "sft/learning_rate": h.get("learning_rate", float("nan")),
               "sft/grad_norm": h.get("grad_norm", float("nan"))} for h in run.result["history"]]
    return run.model_dir, mlflow_metric_history(curves)


def _within_max_length(prompts: list[str], completions: list[str], base_model: str, cfg: SFTParams):
    """The examples that fit ``sft.max_length``; longer ones dropped and logged, too many fail (``overlong_examples``)."""
    if not prompts:
        return prompts, completions
    from r2_write.llm.loading import load_tokenizer

    over = set(overlong_examples(load_tokenizer(base_model), prompts, completions, cfg))
    if over:
        logger.warning("sft: %d of %d examples are longer than sft.max_length=%d tokens and are dropped (TRL would "
                       "cut their answers off)", len(over), len(prompts), cfg.max_length)
    keep = [i for i in range(len(prompts)) if i not in over]
    return [prompts[i] for i in keep], [completions[i] for i in keep]
