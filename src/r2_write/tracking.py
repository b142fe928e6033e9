"""Small helpers to hand metrics to kedro-mlflow metric datasets."""

from __future__ import annotations

import math


def mlflow_metrics(values: dict[str, float], step: int = 0) -> dict[str, dict]:
    """Turn ``{name: value}`` into kedro-mlflow's ``{name: {"value", "step"}}`` (NaNs dropped)."""
    return {
        k: {"value": float(v), "step": step}
        for k, v in values.items()
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    }


def mlflow_metric_history(rows: list[dict[str, float]]) -> dict[str, list[dict]]:
    """Turn per-step dicts into kedro-mlflow metric histories ``{name: [{"value", "step"}]}``."""
    out: dict[str, list[dict]] = {}
    for step, row in enumerate(rows):
        for k, v in row.items():
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                out.setdefault(k, []).append({"value": float(v), "step": step})
    return out
