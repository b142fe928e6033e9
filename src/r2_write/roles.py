"""Build the model clients and the judge of each role from parameters (one place)."""

from __future__ import annotations

from r2_write.config import parse_params
from r2_write.judge.judge import JudgeConfig, RubricJudge
from r2_write.llm.client import LLMClient, get_client
from r2_write.llm.config import LLMConfig


ROLE_FALLBACKS = {"reward_judge": "judge", "eval_judge": "judge"}
"""Judge roles used when ``params:llm`` defines them, else the role they fall back to.

``reward_judge`` scores whatever shapes training (synthesis critic, filtering, scoring, the PPO
and GRPO rewards); ``eval_judge`` scores the evaluation. Left out (conf/base), both are
``llm.judge``; conf/paper sets them to different models so RL never optimises the evaluator."""


def resolve_role(llm_params: dict, role: str) -> str:
    """``role`` if ``params:llm`` defines it, else its fallback (:data:`ROLE_FALLBACKS`).

    >>> resolve_role({"judge": {}}, "eval_judge"), resolve_role({"judge": {}, "eval_judge": {}}, "eval_judge")
    ('judge', 'eval_judge')
    """
    if role not in (llm_params or {}) and role in ROLE_FALLBACKS:
        return ROLE_FALLBACKS[role]
    return role


def client_for(llm_params: dict, role: str) -> LLMClient:
    """The client of ``role`` (writer, judge, reward_judge, eval_judge, policy...) from ``params:llm``."""
    role = resolve_role(llm_params, role)
    if role not in (llm_params or {}):
        raise ValueError(f"parameters 'llm.{role}' missing; add it to conf/base/parameters.yml")
    return get_client(parse_params(LLMConfig, llm_params[role], f"llm.{role}"), role=role)


def judge_for(llm_params: dict, judge_params: dict, role: str = "reward_judge") -> RubricJudge:
    """A fresh judge (own failure counters) over the shared client of ``role`` (default: the reward judge)."""
    return RubricJudge(client_for(llm_params, role), parse_params(JudgeConfig, judge_params, "judge"))


def policy_client(llm_params: dict, model_dir: str, share_backend: bool = True) -> LLMClient:
    """The client that samples from a policy checkpoint (``llm.policy`` settings).

    Local backends (transformers, vllm) load ``model_dir``; an endpoint serves whatever
    model ``llm.policy.model`` names (e.g. a vLLM server started on that checkpoint).
    ``share_backend=False`` gives the client its own model instance, freed with it (used
    when evaluating one variant after another, so they are not all held in memory).
    """
    if "policy" not in (llm_params or {}):
        raise ValueError("parameters 'llm.policy' missing; add it to conf/base/parameters.yml")
    cfg = parse_params(LLMConfig, llm_params["policy"], "llm.policy")
    if cfg.backend != "openai":
        cfg = cfg.model_copy(update={"model": model_dir})
    return get_client(cfg, role="policy") if share_backend else LLMClient(cfg, role="policy")
