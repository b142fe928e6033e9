"""Rubrics pipeline wiring."""

from kedro.pipeline import Node, Pipeline

from .nodes import prepare_prompts, write_instance_rubrics


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(prepare_prompts, inputs=["raw_prompts", "params:prompt_pools"], outputs="prompts", name="prepare_prompts_node"),
            Node(
                write_instance_rubrics,
                inputs=["prompts", "params:rubrics", "params:llm"],
                outputs=["rubrics.accepted", "rubrics.rejected", "rubrics_metrics"],
                name="write_instance_rubrics_node",
            ),
        ],
        tags="rubrics",
    )
