"""Project pipelines: one folder per stage, discovered automatically."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from r2_write.pipelines.ppo.pipeline import create_outcome_pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` runs every stage in order.

    ``ppo_outcome`` is the outcome-only PPO ablation (the ``ppo`` pipeline with
    ``process_weight: 0``), registered beside ``ppo`` so one run trains both.
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["ppo_outcome"] = create_outcome_pipeline()
    pipelines["__default__"] = sum(pipelines.values())
    return pipelines
