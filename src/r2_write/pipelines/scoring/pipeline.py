"""Rubric scoring and dataset-building pipeline wiring."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_rl_set,
    build_sft_set,
    check_dataset_disjointness,
    score_final_answers,
    summarize_datasets,
    trim_redundant_steps,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                trim_redundant_steps,
                inputs=["synthesis.trajectories", "params:ppo.reward"],
                outputs=["scoring.trimmed", "scoring_trim_metrics"],
                name="trim_redundant_steps_node",
            ),
            Node(
                score_final_answers,
                inputs=["scoring.trimmed", "params:llm", "params:judge"],
                outputs=["scoring.trajectories", "scoring_call_metrics"],
                name="score_final_answers_node",
            ),
            Node(build_sft_set, inputs=["scoring.trajectories", "params:scoring"], outputs=["scoring.sft_set", "scoring.sft_rejected"], name="build_sft_set_node"),
            Node(build_rl_set, inputs="filtering.kept", outputs="scoring.rl_set", name="build_rl_set_node"),
            Node(
                check_dataset_disjointness,
                inputs=["scoring.sft_set", "scoring.rl_set", "writingbench_queries", "deepresearchgym_queries"],
                outputs="scoring.disjointness",
                name="check_dataset_disjointness_node",
            ),
            Node(
                summarize_datasets,
                inputs=["scoring.sft_set", "scoring.sft_rejected", "scoring.rl_set", "filtering.dropped"],
                outputs=["scoring.summary", "scoring_metrics"],
                name="summarize_datasets_node",
            ),
        ],
        tags="scoring",
    )
