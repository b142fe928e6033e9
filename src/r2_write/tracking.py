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


class NestedRunLogger:
    """Log per-step training metrics to a nested MLflow run ``train/<variant>`` (when a run is active).

    Variants trained in one ``kedro run`` thus sit side by side in the MLflow UI under the
    same metric names, while the parent run keeps prefixed copies. The run is tagged
    ``variant`` and ``r2_write.stage: training`` (evaluation runs: ``eval/<variant>``,
    ``r2_write.stage: evaluation``).

    Usage::

        with NestedRunLogger("ppo") as log:
            log({"reward/mean": 0.4}, step=1)
    """

    def __init__(self, run_name: str, params: dict | None = None):
        self.run_name, self.params, self.history, self._run = run_name, params or {}, [], None

    def __enter__(self) -> "NestedRunLogger":
        import mlflow

        if mlflow.active_run() is not None:
            self._run = mlflow.start_run(run_name=f"train/{self.run_name}", nested=True)
            mlflow.set_tags({"variant": self.run_name, "r2_write.stage": "training"})
            if self.params:
                mlflow.log_params({k: str(v)[:250] for k, v in self.params.items()})
        return self

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not math.isnan(float(v))}
        self.history.append({"step": step, **clean})
        if self._run is not None:
            import mlflow

            mlflow.log_metrics(clean, step=step)

    def __exit__(self, *exc) -> None:
        if self._run is not None:
            import mlflow

            mlflow.end_run("FINISHED" if exc[0] is None else "FAILED")
