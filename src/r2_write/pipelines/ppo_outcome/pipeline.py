"""Outcome-only PPO ablation: the ``ppo`` pipeline on ``params:ppo`` with process_weight 0 (derived in code).

Its own pipeline so one ``kedro run`` trains and evaluates both variants side by side;
``kedro run --pipelines ppo --params ppo.process_weight=0`` gives the same ablation alone.
"""

from kedro.pipeline import Pipeline

from r2_write.pipelines.ppo.pipeline import variant_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return variant_pipeline("ppo_outcome")
