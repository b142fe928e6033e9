"""GRPO baseline pipeline wiring."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_grpo_policy


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_grpo_policy,
                inputs=["scoring.rl_set", "sft.model", "params:grpo", "params:llm", "params:judge", "params:generic_rubric"],
                outputs=["grpo.model", "grpo.history", "grpo_metrics"],
                name="train_grpo_policy_node",
            )
        ],
        tags="grpo",
    )
