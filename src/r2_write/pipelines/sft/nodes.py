"""SFT nodes: fine-tune the base model on the SFT set with TRL."""

from __future__ import annotations

import pandas as pd

from r2_write.config import parse_params
from r2_write.llm.cache import model_identity
from r2_write.tracking import mlflow_metric_history
from r2_write.training.checkpoints import training_settings
from r2_write.training.launch import launch_sft, parse_launch
from r2_write.training.reuse import reuse_or_train
from r2_write.training.sft import SFTParams, train_sft


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
    data = (list(sft_set["prompt"]), list(sft_set["completion"]))

    def run() -> tuple[str, dict]:
        model_dir, history = train_sft(base_model, *data, cfg) if launch is None else launch_sft(launch, base_model, *data, cfg)
        return model_dir, {"history": history}

    parts = {"settings": training_settings(cfg.model_dump()), "launch": launch, "data": data, "base": model_identity(base_model)}
    model_dir, result, _ = reuse_or_train("sft", parts, run, enabled=cfg.reuse_trained)
    history = result["history"]
    curves = [{"sft/loss": h["loss"], "sft/learning_rate": h.get("learning_rate", float("nan")),
               "sft/grad_norm": h.get("grad_norm", float("nan"))} for h in history]
    return model_dir, mlflow_metric_history(curves)
