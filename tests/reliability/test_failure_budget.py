"""Failure budget: a node whose calls fail too often fails in one line; its rerun pays only for the rest.

The fault server answers the first half of a node's requests and then fails every request
(HTTP 500, or connections closed without an answer). The node fails: with the budget
message (``llm.policy: 10 of 40 policy samples failed (25%, max_failed_share 0.2); most
frequent error ...``) or, when no request gets an answer any more, with the circuit
breaker's. Every answer that arrived is in the response cache, so the same node run again
against a healthy server asks it for exactly the missing calls.
"""

from __future__ import annotations

import pandas as pd
import pytest

from r2_write.llm.base import EndpointError, FailureBudgetError
from r2_write.llm.cache import ResponseCache
from r2_write.pipelines.filtering.nodes import sample_policy_responses

N_PROMPTS, K = 20, 2  # 40 requests in two batches of 20 (one per sample index)
HEALTHY = 30  # requests 0..29 are answered, every later one fails: the second half of the second batch


def _llm(base_url: str, cache_path: str, **settings) -> dict:
    policy = {"backend": "openai", "base_url": base_url, "model": "fake-model", "cache_path": cache_path,
              "max_concurrency": 4, "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
              "timeout_s": 2.0, **settings}
    return {"policy": policy}


def _candidates() -> pd.DataFrame:
    return pd.DataFrame({"id": [f"p{i}" for i in range(N_PROMPTS)],
                         "prompt": [f"Write a short poem about the number {i}." for i in range(N_PROMPTS)]})


PARAMS = {"k": K, "max_new_tokens": 8}


@pytest.mark.parametrize("kind, error", [("500", FailureBudgetError), ("disconnect", EndpointError)])
def test_the_second_half_fails_then_the_rerun_makes_exactly_the_missing_calls(fault_server, tmp_path, kind, error):
    cache_path = str(tmp_path / "cache.sqlite")
    broken = fault_server(faults=(kind,), fail_from=HEALTHY)
    with pytest.raises(error) as err:
        sample_policy_responses(_candidates(), "unused", PARAMS, _llm(broken.base_url, cache_path))
    message = str(err.value)
    cached = len(ResponseCache(cache_path))
    print(f"\n{kind} from request {HEALTHY} on: {broken.requests} requests, {broken.completed} answered, "
          f"{cached} cached; {type(err.value).__name__}: {message}")
    assert "\n" not in message
    if kind == "500":
        assert message.startswith(
            "llm.policy: 10 of 40 policy samples failed (25%, max_failed_share 0.2); most frequent error (10x): "
            f"HTTP 500 from {broken.base_url}: Error code: 500 - injected fault 500"
        )
    else:  # no answer at all: the breaker stops the batch before the budget is even counted
        assert message.startswith("llm.policy, model 'fake-model': stopped after 8 requests in a row got no answer")
    assert cached == broken.completed == HEALTHY  # every answer that arrived, and only those

    healthy = fault_server(record=True)
    samples = sample_policy_responses(_candidates(), "unused", PARAMS, _llm(healthy.base_url, cache_path))
    assert samples["error"].isna().all() and len(samples) == N_PROMPTS * K
    assert healthy.requests == N_PROMPTS * K - HEALTHY  # exactly the missing calls, none repeated
    asked = {r["body"]["messages"][0]["content"] + f"#{r['body']['seed']}" for r in healthy.recorded}
    assert len(asked) == healthy.requests


def test_failures_within_the_budget_keep_todays_behaviour(fault_server, tmp_path):
    server = fault_server(faults=("500",), fail_from=36)  # 4 of 40 fail: 10% <= 20%
    samples = sample_policy_responses(_candidates(), "unused", PARAMS, _llm(server.base_url, str(tmp_path / "c.sqlite")))
    assert samples["error"].notna().sum() == 4 and len(samples) == N_PROMPTS * K  # listed, not dropped


def test_the_budget_is_per_role_setting(fault_server, tmp_path):
    server = fault_server(faults=("500",), fail_from=HEALTHY)
    llm = _llm(server.base_url, str(tmp_path / "c.sqlite"), max_failed_share=0.5)
    samples = sample_policy_responses(_candidates(), "unused", PARAMS, llm)
    assert samples["error"].notna().sum() == 10


# ---- fallbacks count against the same budget ---------------------------------------------------

def _scripted(monkeypatch, respond) -> None:
    """Every role's client is a fresh scripted fake (the role's own settings and name)."""
    from r2_write.llm.client import LLMClient
    from tests.fakes import FakeBackend

    backend = FakeBackend(respond=respond)
    monkeypatch.setattr("r2_write.roles.get_client", lambda cfg, role=None: LLMClient(cfg, backend=backend, role=role))


def _fake_llm(**rubric_writer) -> dict:
    role = {"backend": "transformers", "model": "fake-model", "cache_path": None}
    return {"writer": role, "judge": role, "policy": role, "rubric_writer": {**role, **rubric_writer}}


def _prompts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"p{i}" for i in range(n)], "domain": ["Education"] * n, "language": ["en"] * n,
                         "prompt": [f"Explain topic {i} to children." for i in range(n)], "pool": ["sft", "rl"] * (n // 2)})


def test_a_run_whose_rubric_writer_never_succeeded_fails(monkeypatch):
    from r2_write.pipelines.rubrics.nodes import write_instance_rubrics
    from tests.fakes import default_respond, role_of

    _scripted(monkeypatch, lambda conv, s: "Here are five criteria: clarity, ..." if role_of(conv) == "rubric_writer"
              else default_respond(conv, s))
    with pytest.raises(FailureBudgetError) as err:
        write_instance_rubrics(_prompts(6), {"writer": {"max_attempts": 2}}, _fake_llm())
    print(f"\nrubric writer never succeeded: {err.value}")
    assert str(err.value).startswith("llm.rubric_writer: 6 of 6 prompts left on the generic rubric (100%, "
                                     "max_failed_share 0.2); most frequent error (6x): no JSON list in the answer")
    # allowed on purpose (conf/base: the CPU model): the fallbacks are listed, the node finishes
    accepted, rejected, _ = write_instance_rubrics(_prompts(6), {"writer": {"max_attempts": 2}},
                                                   _fake_llm(max_failed_share=1.0))
    assert accepted.empty and len(rejected) == 6


def test_a_few_rubric_fallbacks_stay_within_the_budget(monkeypatch):
    from r2_write.pipelines.rubrics.nodes import write_instance_rubrics
    from tests.fakes import default_respond, role_of, user_text

    def respond(conv, s):  # one prompt of six never gets a valid rubric
        return "not a rubric" if role_of(conv) == "rubric_writer" and "topic 3" in user_text(conv) else default_respond(conv, s)

    _scripted(monkeypatch, respond)
    accepted, rejected, _ = write_instance_rubrics(_prompts(6), {}, _fake_llm())
    assert len(accepted) == 5 and list(rejected["id"]) == ["p3"]


def test_a_judge_that_never_parses_fails_the_node(monkeypatch):
    from r2_write.pipelines.synthesis.nodes import synthesize_trajectories
    from tests.fakes import default_respond, role_of

    _scripted(monkeypatch, lambda conv, s: "I would say 7/10." if role_of(conv) == "judge" else default_respond(conv, s))
    inputs = _prompts(2).assign(criteria='[{"name": "Clarity", "criteria_description": "clear?", "1-2": "a", '
                                         '"3-4": "b", "5-6": "c", "7-8": "d", "9-10": "e"}]', rubric_source="generic")
    with pytest.raises(FailureBudgetError, match=r"^llm\.judge: 4 of 4 judged criteria unscored \(100%"):
        synthesize_trajectories(inputs, {"loop": {"max_rounds": 1, "plan_tokens": 8, "draft_tokens": 8,
                                                  "reflection_tokens": 8}}, _fake_llm(), {"mode": "generate"})
