"""PPO pipeline (process reward); ``pipelines/ppo_outcome`` reuses it for the ablation."""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from .nodes import plot_reward_and_length, train_ppo_outcome_policy, train_ppo_policy


def variant_pipeline(variant: str) -> Pipeline:
    """``ppo`` trains on ``params:ppo``; ``ppo_outcome`` derives its settings from ``params:ppo`` (lambda 0)."""
    if variant == "ppo_outcome":
        train, params = train_ppo_outcome_policy, ["params:ppo", "params:ppo_outcome"]
    else:
        train, params = update_wrapper(partial(train_ppo_policy, variant=variant), train_ppo_policy), [f"params:{variant}"]
    return Pipeline(
        [
            Node(
                train,
                inputs=["scoring.rl_set", "scoring.sft_set", "sft.model", *params, "params:llm", "params:judge",
                        "params:generic_rubric"],
                outputs=[f"{variant}.model", f"{variant}.history", f"{variant}_metrics"],
                name=f"train_{variant}_policy_node",
            ),
            Node(plot_reward_and_length, inputs=f"{variant}.history", outputs=f"{variant}_curves",
                 name=f"plot_{variant}_curves_node"),
        ],
        tags=["ppo", variant],
    )


def create_pipeline(**kwargs) -> Pipeline:
    return variant_pipeline("ppo")
