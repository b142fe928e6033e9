"""GRPO baseline pipeline wiring."""

from kedro.pipeline import Node, Pipeline

from r2_write.pipelines.ppo.nodes import plot_reward_and_length

from .nodes import train_grpo_policy


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_grpo_policy,
                inputs=["scoring.rl_set", "sft.model", "params:grpo", "params:llm", "params:judge", "params:generic_rubric"],
                outputs=["grpo.model", "grpo.history", "grpo_metrics"],
                name="train_grpo_policy_node",
            ),
            # the same figure as PPO's (shared metric names): reward, length, and the monitor when it ran
            Node(plot_reward_and_length, inputs="grpo.history", outputs="grpo_curves", name="plot_grpo_curves_node"),
        ],
        tags="grpo",
    )
