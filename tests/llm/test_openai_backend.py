"""OpenAIBackend against the fault-injecting fake server, and end to end against `transformers serve`."""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from r2_write.llm.base import LLMError
from r2_write.llm.client import LLMClient
from r2_write.llm.config import LLMConfig, SamplingParams
from r2_write.llm.openai_backend import OpenAIBackend
from tests.llm.fault_server import judge_score

SECRET = "sk-test-SECRET123"
SAMPLING = SamplingParams(temperature=0.0, max_new_tokens=16)


def _convs(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"write line {i}"}] for i in range(n)]


def _cfg(base_url: str, **overrides) -> LLMConfig:
    fields = dict(
        backend="openai", base_url=base_url, model="fake-model", cache_path=None,
        timeout_s=0.5, backoff_base_s=0.01, backoff_max_s=0.05, max_retries=8, max_concurrency=8,
    )
    return LLMConfig(**{**fields, **overrides})


def test_faults_are_retried_until_every_item_succeeds(fault_server):
    server = fault_server(fault_rate=0.3, seed=0, hang_s=2.0)
    gens = OpenAIBackend(_cfg(server.base_url)).generate(_convs(40), SAMPLING)
    assert [g.error for g in gens] == [None] * 40
    assert [g.text for g in gens] == [f"echo: write line {i}" for i in range(40)]  # order kept
    assert all(g.completion_tokens == 4 and g.prompt_tokens == 3 for g in gens)
    assert server.requests > 40 and server.completed == 40
    assert sum(server.faults.values()) == server.requests - 40


@pytest.mark.parametrize("kind", ["429", "500", "503", "timeout", "truncated", "non_json", "disconnect"])
def test_each_transient_fault_is_retried(fault_server, kind):
    server = fault_server(faults=(kind,), fail_first=2, hang_s=1.0)
    gens = OpenAIBackend(_cfg(server.base_url, timeout_s=0.3, max_retries=2)).generate(_convs(2), SAMPLING)
    assert all(g.ok for g in gens), [g.error for g in gens]
    assert server.requests == 4 and server.faults[kind] == 2


def test_exhausted_retries_give_item_errors_without_the_key(fault_server, monkeypatch):
    monkeypatch.setenv("R2_TEST_KEY", SECRET)
    server = fault_server(fault_rate=1.0, hang_s=1.0, api_key=SECRET)
    cfg = _cfg(server.base_url, api_key_env="R2_TEST_KEY", max_retries=0, timeout_s=0.3)
    gens = OpenAIBackend(cfg).generate(_convs(30), SAMPLING)
    assert all(g.error and g.text == "" for g in gens)
    assert server.requests == 30  # no retries with max_retries=0
    assert not any(SECRET in g.error for g in gens)
    prefixes = ("HTTP 429 ", "HTTP 500 ", "HTTP 503 ", "timed out ", "malformed response ")
    seen = {p for g in gens for p in prefixes if g.error.startswith(p)}
    assert all(g.error.startswith(prefixes) for g in gens) and len(seen) >= 4


def test_client_errors_are_not_retried(fault_server, monkeypatch):
    monkeypatch.setenv("R2_TEST_KEY", SECRET)
    server = fault_server(api_key="a-different-key")
    gens = OpenAIBackend(_cfg(server.base_url, api_key_env="R2_TEST_KEY")).generate(_convs(3), SAMPLING)
    assert server.requests == 3
    assert all("HTTP 401" in g.error and SECRET not in g.error for g in gens)


def test_missing_key_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("R2_MISSING_KEY", raising=False)
    with pytest.raises(LLMError, match="R2_MISSING_KEY is not set; export it"):
        OpenAIBackend(_cfg("http://127.0.0.1:9/v1", api_key_env="R2_MISSING_KEY"))
    with pytest.raises(LLMError, match="set base_url"):
        OpenAIBackend(_cfg(None))


def test_unreachable_endpoint_fails_items_quickly():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    start = time.monotonic()
    gens = OpenAIBackend(_cfg(url, max_retries=1)).generate(_convs(3), SAMPLING)
    assert time.monotonic() - start < 5
    assert all(g.error.startswith(f"could not reach {url}: ") for g in gens)


@pytest.mark.parametrize("status", ["429", "503"])
def test_retry_after_is_honoured(fault_server, status):
    server = fault_server(faults=(status,), fail_first=1, retry_after_s=0.3)
    start = time.monotonic()
    [gen] = OpenAIBackend(_cfg(server.base_url, backoff_base_s=0.001, backoff_max_s=5)).generate(_convs(1), SAMPLING)
    assert gen.ok and server.requests == 2
    assert time.monotonic() - start >= 0.3


def test_retry_after_is_capped_by_backoff_max(fault_server):
    server = fault_server(faults=("429",), fail_first=1, retry_after_s=30)
    start = time.monotonic()
    [gen] = OpenAIBackend(_cfg(server.base_url, backoff_max_s=0.1)).generate(_convs(1), SAMPLING)
    assert gen.ok and time.monotonic() - start < 3


def test_requests_run_concurrently_up_to_the_limit(fault_server):
    server = fault_server(latency_s=0.2)
    backend = OpenAIBackend(_cfg(server.base_url, max_concurrency=8, timeout_s=5))
    start = time.monotonic()
    gens = backend.generate(_convs(16), SAMPLING)
    assert time.monotonic() - start < 1.5
    assert all(g.ok for g in gens)
    assert server.max_in_flight == 8


def test_generate_works_inside_a_running_event_loop(fault_server):
    server = fault_server()
    backend = OpenAIBackend(_cfg(server.base_url))

    async def caller():
        return backend.generate(_convs(2), SAMPLING)

    assert [g.text for g in asyncio.run(caller())] == ["echo: write line 0", "echo: write line 1"]


def test_threads_share_one_concurrency_bound(fault_server):
    server = fault_server(latency_s=0.05)
    backend = OpenAIBackend(_cfg(server.base_url, max_concurrency=4, timeout_s=5))
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: backend.generate(_convs(8), SAMPLING), range(3)))
    assert all(g.ok for gens in results for g in gens)
    assert server.requests == 24 and server.max_in_flight <= 4
    backend.close()


def test_next_token_probs_from_top_logprobs(fault_server):
    server = fault_server()
    convs = _convs(3)
    probs = OpenAIBackend(_cfg(server.base_url)).next_token_probs(convs, [str(k) for k in range(1, 11)])
    for conv, p in zip(convs, probs):
        assert max(p, key=p.get) == str(judge_score(conv[-1]["content"]))
        assert sum(p.values()) == pytest.approx(1.0)


def test_next_token_probs_without_logprobs_is_a_clear_error(fault_server):
    server = fault_server(logprobs=False)
    with pytest.raises(LLMError, match="no logprobs; use judge mode 'generate'"):
        OpenAIBackend(_cfg(server.base_url)).next_token_probs(_convs(2), ["1", "2"])


def test_client_caches_successes_and_not_failures(fault_server, tmp_path):
    server = fault_server(faults=("500",), fail_first=1)
    client = LLMClient(_cfg(server.base_url, max_retries=0, cache_path=str(tmp_path / "cache.sqlite")))
    first = client.generate(_convs(1), SAMPLING)  # the first request fails, and is not cached
    second = client.generate(_convs(1), SAMPLING)
    third = client.generate(_convs(1), SAMPLING)
    assert not first[0].ok and second[0].ok and third[0].text == second[0].text
    assert (client.stats.calls, client.stats.failures, client.stats.cache_hits) == (2, 1, 1)
    assert server.requests == 2


@pytest.mark.slow
def test_transformers_serve_end_to_end(transformers_serve, embedded_model_dir, tmp_path):
    cfg = LLMConfig(
        backend="openai", base_url=transformers_serve, model=str(embedded_model_dir),
        cache_path=str(tmp_path / "cache.sqlite"), timeout_s=120, max_retries=1,
    )
    client = LLMClient(cfg)
    convs = [[{"role": "user", "content": "Name a colour."}], [{"role": "user", "content": "Say hello."}]]
    sampling = SamplingParams(temperature=0.0, max_new_tokens=12)
    gens = client.generate(convs, sampling)
    assert all(g.ok and g.text and g.completion_tokens > 0 for g in gens), gens
    calls = client.stats.calls
    again = client.generate(convs, sampling)
    assert client.stats.calls == calls and client.stats.cache_hits == 2
    assert [g.text for g in again] == [g.text for g in gens]
    with pytest.raises(LLMError, match="no logprobs"):  # transformers serve ignores logprobs
        client.next_token_probs(convs[:1], ["1", "2"])
