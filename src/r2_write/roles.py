"""Build the model clients and the judge of each role from parameters (one place)."""

from __future__ import annotations

from r2_write.config import parse_params
from r2_write.judge.judge import JudgeConfig, RubricJudge
from r2_write.llm.client import LLMClient, get_client
from r2_write.llm.config import LLMConfig


def client_for(llm_params: dict, role: str) -> LLMClient:
    """The client of ``role`` (writer, judge, policy...) from ``params:llm``."""
    if role not in (llm_params or {}):
        raise ValueError(f"parameters 'llm.{role}' missing; add it to conf/base/parameters.yml")
    return get_client(parse_params(LLMConfig, llm_params[role], f"llm.{role}"))


def judge_for(llm_params: dict, judge_params: dict) -> RubricJudge:
    """A fresh judge (own failure counters) over the shared judge client."""
    return RubricJudge(client_for(llm_params, "judge"), parse_params(JudgeConfig, judge_params, "judge"))
