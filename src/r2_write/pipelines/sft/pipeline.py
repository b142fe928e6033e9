"""SFT pipeline wiring."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_sft_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_sft_model,
                inputs=["scoring.sft_set", "base_model", "params:sft"],
                outputs=["sft.model", "sft_metrics"],
                name="train_sft_model_node",
            )
        ],
        tags="sft",
    )
