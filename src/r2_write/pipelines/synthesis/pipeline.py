"""Synthesis pipeline wiring."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    extract_reflection_steps,
    select_synthesis_prompts,
    summarize_reflection_effects,
    synthesize_trajectories,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                select_synthesis_prompts,
                inputs=["prompts", "rubrics.accepted", "params:synthesis", "params:generic_rubric"],
                outputs="synthesis.inputs",
                name="select_synthesis_prompts_node",
            ),
            Node(
                synthesize_trajectories,
                inputs=["synthesis.inputs", "params:synthesis", "params:llm", "params:judge"],
                outputs=["synthesis.trajectories", "synthesis.failures", "synthesis_call_metrics"],
                name="synthesize_trajectories_node",
            ),
            Node(
                extract_reflection_steps,
                inputs="synthesis.trajectories",
                outputs="synthesis.steps",
                name="extract_reflection_steps_node",
            ),
            Node(
                summarize_reflection_effects,
                inputs="synthesis.steps",
                outputs="synthesis_step_metrics",
                name="summarize_reflection_effects_node",
            ),
        ],
        tags="synthesis",
    )
