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
