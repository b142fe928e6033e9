"""Chat generation through any OpenAI-compatible endpoint (OpenAI, vLLM serve, transformers serve).

Requests run concurrently (at most ``cfg.max_concurrency`` in flight) with the backend's
own retry loop: timeouts, connection errors, 429, 408/409, 5xx and unparseable bodies are
retried up to ``cfg.max_retries`` times with full-jitter exponential backoff (or after the
server's ``Retry-After``); 400/401/403/404/422 fail at once. An item that still fails comes
back as ``Generation(text="", error=...)``; one bad item never raises.

Two checks stop a run against an endpoint that cannot serve it, instead of paying every
request's retry schedule: ``check_endpoint`` (called by the client once, before the first
uncached request) asks ``GET /models`` (and, when the model is not listed, for one token of
the model) and raises :class:`EndpointError` on a connection/DNS/TLS error or a 401/403/404;
and a circuit breaker raises it when ``cfg.circuit_breaker_failures`` requests in a row got
no HTTP answer at all (refused, DNS, TLS, timeouts), after cancelling the rest of the batch.
An HTTP answer of any status (429 and 503 with ``Retry-After`` included) resets the count.

The sync ``generate`` hands its work to one event loop per backend, running in a daemon
thread, so it can be called from any thread, with or without a running loop of its own,
and concurrent callers share the connection pool and the ``max_concurrency`` bound.
Keeping the loop (and with it the client and its open connections) across calls saves
the client set-up and the TCP/TLS handshakes that a fresh ``asyncio.run`` per call pays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import openai

from r2_write.llm.base import Conversation, EndpointError, Generation, LLMError
from r2_write.llm.config import LLMConfig, SamplingParams
from r2_write.llm.openai_wire import (
    Malformed,
    NoLogprobs,
    checked,
    model_ids,
    parse_generation,
    parse_probs,
    retry_after,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUS = (408, 409, 429)
NO_KEY = "EMPTY"  # what local servers (vLLM, transformers serve) accept when no key is configured
PREFLIGHT_ATTEMPTS = 3  # connection errors of the endpoint check are tried again twice (0.5 s, 1 s)
PREFLIGHT_TIMEOUT_S = 15.0  # at most, per check request (timeout_s when shorter)


class _Breaker:
    """Consecutive connection-level failures over the requests of one batch (event-loop only).

    At ``limit`` failures in a row it trips and cancels the batch's other requests; any HTTP
    answer resets the count. ``limit`` 0 never trips.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.count, self.tripped, self.last = limit, 0, False, ""
        self.tasks: list[asyncio.Task] = []

    def failure(self, error: str) -> None:
        if self.tripped:
            return
        self.count, self.last = self.count + 1, error
        if self.limit and self.count >= self.limit:
            self.tripped = True
            current = asyncio.current_task()
            for task in self.tasks:
                if task is not current and not task.done():
                    task.cancel()

    def answered(self) -> None:
        self.count = 0


class _LoopThread:
    """An event loop running forever in a daemon thread, plus the state bound to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.client: openai.AsyncOpenAI | None = None
        self.sem: asyncio.Semaphore | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="openai-backend-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it (from any other thread)."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise LLMError("OpenAIBackend.generate was called from its own event loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        """Close the client, stop the loop and join the thread (idempotent)."""
        if self.loop.is_closed() or os.getpid() != self.pid:
            return
        if self.client is not None and self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class OpenAIBackend:
    """Concurrent, retrying chat completions against ``cfg.base_url``.

    Example::

        cfg = LLMConfig(backend="openai", base_url="http://127.0.0.1:8000/v1", model="my-model")
        gens = OpenAIBackend(cfg).generate([[{"role": "user", "content": "Hi"}]], SamplingParams())
    """

    name = "openai"

    def __init__(self, cfg: LLMConfig):
        if not cfg.base_url:
            raise LLMError(
                "set base_url (e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1) "
                "for the openai backend in the LLM config"
            )
        if cfg.api_key_env is None:
            key = NO_KEY
        else:
            key = os.environ.get(cfg.api_key_env, "")
            if not key:
                raise LLMError(
                    f"environment variable {cfg.api_key_env} is not set; export it "
                    f"(export {cfg.api_key_env}=...) or set api_key_env: null for a local server without keys"
                )
        self.cfg = cfg
        self.model = cfg.model
        self.base_url = cfg.base_url.rstrip("/")
        self._api_key = key
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._finalizer: weakref.finalize | None = None
        self._endpoint_ok = False

    # ---- public API ------------------------------------------------------------------
    def generate(
        self,
        conversations: list[Conversation],
        sampling: SamplingParams,
        on_result: Callable[[int, Generation], None] | None = None,
    ) -> list[Generation]:
        """One completion per conversation, in order; failures carry ``error``.

        ``on_result(index, generation)``, when given, is called (in a worker thread, never
        on the event loop) as soon as each item is final, before ``generate`` returns: the
        client commits every answer to its cache the moment it arrives, so a run killed
        mid-batch loses only the requests still in flight.
        """
        if not conversations:
            return []
        return self._run(self._generate_all(conversations, sampling, on_result))

    def next_token_probs(
        self, conversations: list[Conversation], candidates: list[str], assistant_prefix: str = ""
    ) -> list[dict[str, float]]:
        """Probability of each candidate as the first token after ``assistant_prefix``.

        Read from the top-20 logprobs of a one-token completion; a candidate outside the
        top 20 gets 0, and only candidates that are one token for the served tokenizer
        are seen. A non-empty ``assistant_prefix`` is sent as a final assistant message
        with vLLM's ``continue_final_message`` extension.

        Raises:
            LLMError: the endpoint returns no logprobs, or a request failed after retries.
        """
        if not conversations:
            return []
        results = self._run(self._probs_all(conversations, candidates, assistant_prefix))
        if any(isinstance(r, NoLogprobs) for r in results):
            raise LLMError(f"endpoint {self.base_url} returned no logprobs; use judge mode 'generate'")
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            raise LLMError(f"{len(errors)} of {len(results)} next-token requests failed: {errors[0]}")
        return results  # type: ignore[return-value]

    def check_endpoint(self) -> None:
        """Make sure, once per backend, that the endpoint can serve ``cfg.model`` at all.

        ``GET /models``; when that is missing (404) or does not list the model, one 1-token
        chat completion of the model. A connection/DNS/TLS error (after
        ``PREFLIGHT_ATTEMPTS`` tries) or a 401/403/404 raises :class:`EndpointError` with
        one line naming the URL and the error (never the key). Any other answer (429, 5xx,
        a timeout of the model call) passes: the batch's retries and breaker handle those.
        Skipped when ``cfg.preflight`` is false.
        """
        if self._endpoint_ok or not self.cfg.preflight:
            return
        problem = self._run(self._preflight())
        if problem is not None:
            raise EndpointError(problem)
        self._endpoint_ok = True

    def close(self) -> None:
        """Close connections and stop the backend's loop thread (also done when garbage-collected)."""
        if self._finalizer is not None:
            self._finalizer()

    # ---- async internals -------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this backend's loop thread, starting one (again, after a fork) if needed."""
        with self._lock:
            if self._runner is None or self._runner.pid != os.getpid() or self._runner.loop.is_closed():
                self._runner = _LoopThread()
                self._finalizer = weakref.finalize(self, self._runner.close)
            runner = self._runner
        return runner.run(coro)

    def _session(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        """The client and concurrency bound of the current loop (created on first use there)."""
        runner = self._runner
        assert runner is not None
        if runner.client is None:
            runner.client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self.cfg.timeout_s,
                http_client=_http_client(self.cfg.timeout_s),
            )
            runner.sem = asyncio.Semaphore(self.cfg.max_concurrency)
        return runner.client, runner.sem  # type: ignore[return-value]

    async def _preflight(self) -> str | None:
        """None when the endpoint can serve the model (or looks merely busy), else what is wrong."""
        client, _ = self._session()
        options = {"timeout": min(self.cfg.timeout_s, PREFLIGHT_TIMEOUT_S)}
        listing, status, error = await self._probe(lambda: client.get("/models", cast_to=object, options=options))
        if listing is None and status is None:
            return f"{error}; is the server running, and is base_url right?"
        if status in (401, 403):
            return f"{error}; the key was refused: check the variable named in api_key_env"
        if listing is not None and self.model in model_ids(listing):
            return None
        if status not in (None, 404):  # 429, 5xx, odd bodies: up but busy; the batch's retries cope
            logger.warning("endpoint check of %s inconclusive (%s); going ahead", self.base_url, error)
            return None
        # no /models (404) or the model is not listed there: ask the model itself for one token
        body = {"model": self.model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1}
        answer, status, error = await self._probe(
            lambda: client.post("/chat/completions", body=body, cast_to=object, options=options)
        )
        if answer is None and status is None:
            return f"{error}; is the server running, and is base_url right?"
        if status in (401, 403):
            return f"{error}; the key was refused: check the variable named in api_key_env"
        if status == 404:
            return f"{error}; check base_url (usually ending in /v1) and model {self.model!r}"
        return None

    async def _probe(self, send: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[Any, int | None, str | None]:
        """``(answer, None, None)``; ``(None, status, error)`` for an HTTP error or an unusable
        answer (status 0); ``(None, None, error)`` when no connection could be made."""
        error = "not attempted"
        for attempt in range(PREFLIGHT_ATTEMPTS):
            try:
                return await send(), None, None
            except openai.APIStatusError as exc:
                return None, exc.status_code, self._classify(exc)[2]
            except openai.APIConnectionError as exc:  # refused, DNS, TLS, timeouts
                error = self._classify(exc)[2]
            except Exception as exc:  # noqa: BLE001 - an answer, just not a usable one
                return None, 0, self._classify(exc)[2]
            if attempt + 1 < PREFLIGHT_ATTEMPTS:
                await asyncio.sleep(0.5 * 2**attempt)
        return None, None, error

    async def _generate_all(
        self,
        conversations: list[Conversation],
        sampling: SamplingParams,
        on_result: Callable[[int, Generation], None] | None = None,
    ) -> list[Generation]:
        sampling_body = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": sampling.seed,
        }
        client, sem = self._session()
        breaker = _Breaker(self.cfg.circuit_breaker_failures)

        async def one(index: int, conv: Conversation) -> Generation:
            body = {"model": self.model, "messages": conv, **sampling_body}
            result, error = await self._with_retries(client, sem, body, parse_generation, breaker)
            gen = result if error is None else Generation(text="", finish_reason="error", error=error)
            if on_result is not None:
                await asyncio.to_thread(on_result, index, gen)  # e.g. a cache write: off the loop
            return gen

        breaker.tasks = [asyncio.ensure_future(one(i, c)) for i, c in enumerate(conversations)]
        gens = await asyncio.gather(*breaker.tasks, return_exceptions=True)
        self._raise_if_tripped(breaker, gens)
        for g in gens:
            if isinstance(g, BaseException):
                raise g
        failed = [g.error for g in gens if not g.ok]
        if failed:
            logger.warning("openai backend: %d of %d requests failed (first: %s)", len(failed), len(gens), failed[0])
        return list(gens)

    async def _probs_all(self, conversations: list[Conversation], candidates: list[str], prefix: str) -> list[Any]:
        extra = {"continue_final_message": True, "add_generation_prompt": False} if prefix else {}
        client, sem = self._session()
        breaker = _Breaker(self.cfg.circuit_breaker_failures)

        async def one(conv: Conversation) -> Any:
            messages = conv + [{"role": "assistant", "content": prefix}] if prefix else conv
            body = {"model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0.0,
                    "logprobs": True, "top_logprobs": 20, **extra}
            try:
                result, error = await self._with_retries(
                    client, sem, body, lambda r: parse_probs(r, candidates), breaker
                )
            except NoLogprobs as exc:
                return exc
            return result if error is None else error

        breaker.tasks = [asyncio.ensure_future(one(c)) for c in conversations]
        results = await asyncio.gather(*breaker.tasks, return_exceptions=True)
        self._raise_if_tripped(breaker, results)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, NoLogprobs):
                raise r
        return list(results)

    def _raise_if_tripped(self, breaker: _Breaker, results: list[Any]) -> None:
        if not breaker.tripped:
            return
        answered = sum(not isinstance(r, (BaseException, str)) and getattr(r, "ok", True) for r in results)
        raise EndpointError(
            f"stopped after {breaker.count} requests in a row got no answer from {self.base_url} "
            f"({answered} of {len(results)} requests of the batch answered; answers are cached); "
            f"last error: {breaker.last}"
        )

    async def _with_retries(
        self, client: openai.AsyncOpenAI, sem: asyncio.Semaphore, body: dict, parse: Callable[[Any], T],
        breaker: _Breaker | None = None,
    ) -> tuple[T | None, str | None]:
        """POST ``body`` to /chat/completions and parse it, retrying by the policy.

        Uses the client's plain ``post`` with a JSON dict (no typed request transform or
        response model): half the CPU per request of ``chat.completions.create``, which
        matters at high concurrency. Returns ``(result, None)`` or ``(None, error)``.
        ``breaker`` counts the attempts that got no HTTP answer; once it trips, no
        further attempt is sent.
        """
        breaker = breaker or _Breaker(0)
        error = "not attempted"
        for attempt in range(self.cfg.max_retries + 1):
            try:
                async with sem:
                    if breaker.tripped:
                        break
                    response = await client.post("/chat/completions", body=body, cast_to=object)
                breaker.answered()
                return checked(parse, response), None
            except NoLogprobs:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes an item error
                retryable, wait_hint, error = self._classify(exc)
                if isinstance(exc, openai.APIConnectionError):  # no HTTP answer at all
                    breaker.failure(error)
                else:  # an answer of some status, or an unusable body: the endpoint is there
                    breaker.answered()
            if not retryable or attempt == self.cfg.max_retries or breaker.tripped:
                break
            await asyncio.sleep(self._delay(attempt, wait_hint))
        return None, error

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Server-given Retry-After (capped), else full jitter on a doubling, capped base."""
        cap = self.cfg.backoff_max_s
        if retry_after is not None:
            return min(retry_after, cap)
        return random.uniform(0.0, min(cap, self.cfg.backoff_base_s * 2**attempt))

    def _classify(self, exc: Exception) -> tuple[bool, float | None, str]:
        """(retryable, Retry-After seconds or None, short error text without secrets)."""
        url = self.base_url
        if isinstance(exc, openai.APIConnectionError):
            # the aiohttp transport reports every connection error as a connect *timeout*:
            # the root cause tells a refused connection, a timeout and a dropped one apart
            refused = _connection_refusal(exc)
            if refused is not None:
                return True, None, self._clean(f"could not reach {url}: {type(refused).__name__}: {refused}")
            root = _chain(exc)[-1]
            if isinstance(root, TimeoutError) or "timeout" in type(root).__name__.lower():
                return True, None, self._clean(f"timed out after {self.cfg.timeout_s:g} s waiting for {url}")
            return True, None, self._clean(f"connection to {url} failed: {type(root).__name__}: {root}")
        if isinstance(exc, openai.APIStatusError):
            code = exc.status_code
            retryable = code in RETRYABLE_STATUS or code >= 500
            hint = retry_after(exc.response.headers) if code in (429, 503) else None
            detail = exc.message
            if exc.body and detail.strip() == f"Error code: {code}":  # body not in the message
                detail = f"{detail}: {exc.body}"
            return retryable, hint, self._clean(f"HTTP {code} from {url}: {detail}")
        if isinstance(exc, (openai.APIResponseValidationError, Malformed, ValueError)):
            return True, None, self._clean(f"malformed response from {url}: {type(exc).__name__}: {exc}")
        return False, None, self._clean(f"{type(exc).__name__} calling {url}: {exc}")

    def _clean(self, text: str, limit: int = 300) -> str:
        """One line, at most ``limit`` characters, the API key masked."""
        if self._api_key and self._api_key != NO_KEY:
            text = text.replace(self._api_key, "***")
        text = re.sub(r"\s+", " ", text).strip()
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _http_client(timeout_s: float) -> Any:
    """The SDK's aiohttp transport when it is available (about half the CPU per request of
    the default httpx transport at high concurrency), else None for the SDK default."""
    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None:
        return None
    try:
        return factory(timeout=timeout_s)
    except (RuntimeError, ImportError):  # SDK installed without its aiohttp extra
        return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _connection_refusal(exc: BaseException) -> BaseException | None:
    """The OS-level connection error behind ``exc`` (refused, unreachable, DNS), if any."""
    for cause in reversed(_chain(exc)):
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return cause
    return None
