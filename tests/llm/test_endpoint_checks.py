"""An endpoint that cannot serve the run stops it at once, in one line, and nothing paid for is lost.

* the endpoint check (``OpenAIBackend.check_endpoint``, run by the client before its first
  uncached request): a closed port, a refused key, a wrong URL stop the client with an
  ``EndpointError`` naming role, URL and error (never the key), in seconds;
* the circuit breaker: an endpoint that stops answering mid-batch stops the batch after
  ``circuit_breaker_failures`` requests in a row got no answer; every answer that arrived is
  in the cache, and the rerun against a healthy endpoint asks for exactly the rest;
* 429 / 503 with ``Retry-After`` are answers, not connection failures: they never trip it.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from r2_write.llm.base import EndpointError
from r2_write.llm.cache import ResponseCache
from r2_write.llm.client import LLMClient
from r2_write.llm.config import LLMConfig, SamplingParams
from tests.llm.fault_server import FaultServer

SECRET = "sk-test-SECRET-endpoint-42"
SAMPLING = SamplingParams(temperature=0.0, max_new_tokens=8)


def _convs(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"write line {i}"}] for i in range(n)]


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


def _client(base_url: str, role: str = "writer", cache=None, **overrides) -> LLMClient:
    """Default retries unless overridden: the check must be fast without tuning them."""
    cfg = LLMConfig(**{"backend": "openai", "base_url": base_url, "model": "fake-model", "cache_path": None, **overrides})
    return LLMClient(cfg, cache=cache, role=role)


def test_closed_port_stops_at_the_check_in_seconds():
    url = _closed_port_url()
    client = _client(url, role="rubric_writer")  # default max_retries=5: ~8 s per request without the check
    start = time.monotonic()
    with pytest.raises(EndpointError) as err:
        client.generate(_convs(60), SAMPLING)
    elapsed = time.monotonic() - start
    message = str(err.value)
    print(f"\nclosed port: EndpointError after {elapsed:.2f} s: {message}")
    assert elapsed < 10  # 3 connection attempts, 0.5 s and 1 s apart
    assert message.startswith("llm.rubric_writer, model 'fake-model': could not reach " + url)
    assert "ConnectionRefusedError" in message and "\n" not in message
    assert client.stats.calls == 0 and client.stats.failures == 0  # nothing was sent


def test_refused_key_stops_without_showing_it(fault_server, monkeypatch):
    server = fault_server(api_key="the-right-key")
    monkeypatch.setenv("R2_TEST_KEY", SECRET)
    client = _client(server.base_url, role="judge", api_key_env="R2_TEST_KEY")
    with pytest.raises(EndpointError, match=r"^llm\.judge, model 'fake-model': HTTP 401 from http://127\.0\.0\.1") as err:
        client.generate(_convs(3), SAMPLING)
    assert SECRET not in str(err.value) and "api_key_env" in str(err.value)
    assert server.requests == 0  # no chat request was made


def test_wrong_url_stops_with_404(fault_server):
    server = fault_server()
    client = _client(server.base_url.removesuffix("/v1"))  # the usual slip: /v1 missing
    with pytest.raises(EndpointError, match="HTTP 404 .* check base_url"):
        client.generate(_convs(3), SAMPLING)
    assert server.requests == 0  # /models was 404, and so was the 1-token probe: not one chat request served


def test_check_runs_once_and_only_for_uncached_work(fault_server, tmp_path):
    server = fault_server(model="served-model")
    cache = ResponseCache(tmp_path / "cache.sqlite")
    client = _client(server.base_url, cache=cache, model="alias-of-served-model")  # not listed by /models
    assert all(g.ok for g in client.generate(_convs(4), SAMPLING))
    assert server.requests == 1 + 4  # one 1-token probe (it answered), then the batch
    client.generate(_convs(6), SAMPLING)
    assert server.requests == 5 + 2  # no second check
    # a fully cached rerun needs no endpoint at all: its check never runs
    offline = _client(_closed_port_url(), cache=cache, model="alias-of-served-model")
    assert [g.text for g in offline.generate(_convs(6), SAMPLING)] == [f"echo: write line {i}" for i in range(6)]


def test_check_can_be_switched_off(fault_server):
    server = fault_server(api_key="k")
    client = _client(server.base_url, preflight=False, max_retries=0)
    gens = client.generate(_convs(2), SAMPLING)  # the per-item errors of before
    assert all(g.error and "HTTP 401" in g.error for g in gens)


def test_breaker_stops_a_batch_when_the_endpoint_dies_and_the_rerun_asks_only_the_rest(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    n = 120
    server = FaultServer(latency_s=0.02).__enter__()
    client = _client(server.base_url, cache=cache, max_concurrency=4)  # default retries and breaker (8)
    outcome: dict = {}

    def run() -> None:
        try:
            client.generate(_convs(n), SAMPLING)
        except EndpointError as exc:
            outcome["error"] = exc
        outcome["t"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    while server.completed < n // 3:
        time.sleep(0.01)
    stopped_at = time.monotonic()
    server.__exit__(None, None, None)  # the endpoint goes away: refused from now on
    worker.join(timeout=30)
    assert not worker.is_alive()
    elapsed = outcome["t"] - stopped_at
    answered = len(cache)
    print(f"\nendpoint died mid-batch: breaker tripped {elapsed:.2f} s later; {answered} of {n} answers cached; "
          f"{outcome['error']}")
    assert "error" in outcome
    message = str(outcome["error"])
    assert message.startswith("llm.writer, model 'fake-model': stopped after 8 requests in a row got no answer")
    assert elapsed < 10  # not 90 requests x their retry schedule
    # every answer that arrived is cached; the server counts an answer before sending it, so up to the
    # 4 requests in flight when it went away may be counted there and never reach the client
    assert server.completed - 4 <= answered < n

    with FaultServer() as healthy:  # another port: the cache key has no URL in it
        rerun = _client(healthy.base_url, cache=cache, max_concurrency=4)
        gens = rerun.generate(_convs(n), SAMPLING)
    assert all(g.ok for g in gens)
    assert healthy.requests == n - answered  # exactly the missing calls
    assert rerun.stats.cache_hits == answered


@pytest.mark.parametrize("kind", ["429", "503"])
def test_rate_limits_with_retry_after_never_trip_the_breaker(fault_server, kind):
    server = fault_server(faults=(kind,), fail_first=30, retry_after_s=0.01)
    client = _client(server.base_url, max_concurrency=8, max_retries=8, circuit_breaker_failures=2)
    gens = client.generate(_convs(10), SAMPLING)
    assert all(g.ok for g in gens)
    assert server.faults[kind] == 30


def test_breaker_counts_timeouts_and_disconnects(fault_server):
    server = fault_server(faults=("disconnect",), fault_rate=1.0)
    client = _client(server.base_url, max_concurrency=2, max_retries=3, backoff_base_s=0.01,
                     circuit_breaker_failures=5)
    with pytest.raises(EndpointError, match="stopped after 5 requests in a row got no answer"):
        client.generate(_convs(50), SAMPLING)
    assert server.requests <= 5 + 2  # the ones in flight when it tripped, at most
