"""Evaluation pipeline wiring.

Shared inputs are prepared once (``evaluation.writingbench_inputs``, ``evaluation.drg_inputs``,
``evaluation.drg_passages``); then one modular pipeline per model variant, namespaced
``evaluation.<variant>`` (datasets ``evaluation.<variant>.writingbench_scores`` ...; nodes
``evaluation.<variant>.generate_writingbench_responses_node`` ...), reads the variant's model
dataset; ``fingerprint_models_node`` hashes every variant's model by content
(``evaluation.model_fingerprints``); ``compare_variants_node`` joins every variant's summary into
one table (a headline, identical weights shown as one result, then the full detail) and
``reflection_effects_node`` sets the synthesis reflection steps beside each variant's own
(``evaluation.<variant>.reflection_steps``, judged by ``judge_reflection_steps_node``). With
both ``ppo`` and ``ppo_outcome`` evaluated, ``plot_reward_and_length_dynamics_node`` draws their
training histories on the same axes (``evaluation.ppo_dynamics_plot``).

Run a subset of variants with ``kedro run --pipelines evaluation --namespaces evaluation.base``
(the comparison then needs the other summaries from an earlier run), or build the pipeline
with ``create_pipeline(variants=...)``.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compare_variants,
    fingerprint_models,
    generate_drg_reports,
    generate_writingbench_responses,
    judge_drg_key_points,
    judge_drg_quality,
    judge_reflection_steps,
    judge_writingbench_responses,
    plot_reward_and_length_dynamics,
    reflection_effects,
    retrieve_drg_passages,
    select_drg_queries,
    select_writingbench_queries,
    summarize_variant,
)

VARIANTS: dict[str, str] = {
    "base": "base_model",
    "sft": "sft.model",
    "ppo": "ppo.model",
    "ppo_outcome": "ppo_outcome.model",
    "grpo": "grpo.model",
}
"""Model variants evaluated by default: name -> model dataset (a ModelDirectoryDataset)."""

DYNAMICS = {"ppo": "ppo.history", "ppo_outcome": "ppo_outcome.history"}
"""When both PPO variants are evaluated, their training histories feed the joint reward and length
dynamics plot (``evaluation.ppo_dynamics_plot``) and the reason given for identical weights."""

SHARED = {
    "writingbench_inputs": "evaluation.writingbench_inputs",
    "drg_inputs": "evaluation.drg_inputs",
    "drg_passages": "evaluation.drg_passages",
}


def _bind_variant(variant: str):
    return update_wrapper(partial(summarize_variant, variant=variant), summarize_variant)


def _bind_variants(variants: list[str]):
    return update_wrapper(partial(reflection_effects, variants=variants), reflection_effects)


def _bind_fingerprints(variants: dict[str, str]):
    return update_wrapper(partial(fingerprint_models, variants=variants), fingerprint_models)


def _variant_pipeline(variant: str, model_dataset: str) -> Pipeline:
    template = Pipeline(
        [
            Node(
                generate_writingbench_responses,
                inputs=["model", "writingbench_inputs", "params:evaluation", "params:llm"],
                outputs="writingbench_responses",
                name="generate_writingbench_responses_node",
            ),
            Node(
                judge_writingbench_responses,
                inputs=["writingbench_responses", "params:evaluation", "params:llm", "params:judge"],
                outputs="writingbench_scores",
                name="judge_writingbench_responses_node",
            ),
            Node(
                generate_drg_reports,
                inputs=["model", "drg_inputs", "drg_passages", "params:evaluation", "params:llm"],
                outputs="drg_reports",
                name="generate_drg_reports_node",
            ),
            Node(
                judge_drg_key_points,
                inputs=["drg_reports", "params:evaluation", "params:llm", "params:judge"],
                outputs="drg_keypoint_labels",
                name="judge_drg_key_points_node",
            ),
            Node(
                judge_drg_quality,
                inputs=["drg_reports", "params:evaluation", "params:llm", "params:judge"],
                outputs="drg_quality",
                name="judge_drg_quality_node",
            ),
            Node(
                judge_reflection_steps,
                inputs=["writingbench_responses", "params:evaluation", "params:llm", "params:judge"],
                outputs="reflection_steps",
                name="judge_reflection_steps_node",
            ),
            Node(
                _bind_variant(variant),
                inputs=["writingbench_responses", "writingbench_scores", "drg_keypoint_labels", "drg_quality", "reflection_steps"],
                outputs=["summary", "metrics", "writingbench_breakdown"],
                name="summarize_variant_node",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=f"evaluation.{variant}",
        inputs={"model": model_dataset, **SHARED},
        parameters={"evaluation", "llm", "judge"},
        tags=["evaluation", f"evaluation_{variant}"],
    )


def create_pipeline(variants: dict[str, str] | list[str] | None = None, **kwargs) -> Pipeline:
    """The evaluation pipeline over ``variants`` (default :data:`VARIANTS`).

    Args:
        variants: Names mapped to model datasets, or names only (looked up in
            :data:`VARIANTS`, else ``<name>.model``).
    """
    if variants is None:
        variants = VARIANTS
    if not isinstance(variants, dict):
        variants = {v: VARIANTS.get(v, f"{v}.model") for v in variants}
    if not variants:
        raise ValueError("evaluation needs at least one model variant")
    both_ppo = all(variants.get(v) == f"{v}.model" for v in DYNAMICS)
    histories = list(DYNAMICS.values()) if both_ppo else []
    dynamics = [
        Node(
            plot_reward_and_length_dynamics,
            inputs=histories,
            outputs="evaluation.ppo_dynamics_plot",
            name="plot_reward_and_length_dynamics_node",
        )
    ] if both_ppo else []
    shared = Pipeline(
        [
            Node(
                select_writingbench_queries,
                inputs=["writingbench_queries", "params:evaluation"],
                outputs=SHARED["writingbench_inputs"],
                name="select_writingbench_queries_node",
            ),
            Node(
                select_drg_queries,
                inputs=["deepresearchgym_queries", "params:evaluation"],
                outputs=SHARED["drg_inputs"],
                name="select_drg_queries_node",
            ),
            Node(
                retrieve_drg_passages,
                inputs=[SHARED["drg_inputs"], "params:evaluation"],
                outputs=SHARED["drg_passages"],
                name="retrieve_drg_passages_node",
            ),
            Node(
                _bind_fingerprints(dict(variants)),
                inputs=list(dict.fromkeys(variants.values())),
                outputs="evaluation.model_fingerprints",
                name="fingerprint_models_node",
            ),
            Node(
                compare_variants,
                inputs=[f"evaluation.{v}.summary" for v in variants] + [f"evaluation.{v}.writingbench_breakdown" for v in variants]
                + ["evaluation.model_fingerprints"] + histories,
                outputs=[
                    "evaluation.comparison",
                    "evaluation.comparison_markdown",
                    "evaluation.comparison_plot",
                    "evaluation.writingbench_breakdown",
                ],
                name="compare_variants_node",
            ),
            Node(
                _bind_variants(list(variants)),
                inputs=["synthesis.steps"] + [f"evaluation.{v}.reflection_steps" for v in variants],
                outputs=["evaluation.reflection_effects", "evaluation.reflection_effects_plot"],
                name="reflection_effects_node",
            ),
        ]
        + dynamics,
        tags="evaluation",
    )
    return shared + sum((_variant_pipeline(v, m) for v, m in variants.items()), Pipeline([]))
