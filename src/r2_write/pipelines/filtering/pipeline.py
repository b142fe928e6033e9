"""Difficulty-filtering pipeline wiring."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    filter_by_difficulty,
    plot_difficulty_histogram,
    sample_policy_responses,
    score_policy_samples,
    select_rl_prompts,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                select_rl_prompts,
                inputs=["prompts", "rubrics.accepted", "params:filtering", "params:generic_rubric"],
                outputs="filtering.candidates",
                name="select_rl_prompts_node",
            ),
            Node(
                sample_policy_responses,
                inputs=["filtering.candidates", "base_model", "params:filtering", "params:llm"],
                outputs="filtering.samples",
                name="sample_policy_responses_node",
            ),
            Node(
                score_policy_samples,
                inputs=["filtering.samples", "filtering.candidates", "params:llm", "params:judge"],
                outputs=["filtering.scored_samples", "filtering_call_metrics"],
                name="score_policy_samples_node",
            ),
            Node(
                filter_by_difficulty,
                inputs=["filtering.scored_samples", "filtering.candidates", "params:filtering"],
                outputs=["filtering.kept", "filtering.dropped", "filtering_metrics"],
                name="filter_by_difficulty_node",
            ),
            Node(
                plot_difficulty_histogram,
                inputs=["filtering.kept", "filtering.dropped", "params:filtering"],
                outputs="filtering_histogram",
                name="plot_difficulty_histogram_node",
            ),
        ],
        tags="filtering",
    )
