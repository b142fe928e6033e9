"""A small OpenAI-compatible chat server that injects faults, for tests and benchmarks (a test double:
it lives under ``tests/``, and the benchmarks import it from there, run from the repository root).

It answers ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1 from a
background thread (aiohttp, so thousands of requests can be in flight at once). Answers
are deterministic functions of the last user message; faults are drawn per request from
a seeded RNG (request number ``n`` always gets the same draw):

===============  =================================================================
fault            what the client sees
===============  =================================================================
``429``          HTTP 429 with ``Retry-After: <retry_after_s>``
``500``          HTTP 500
``503``          HTTP 503 with ``Retry-After: <retry_after_s>``
``timeout``      nothing for ``hang_s`` seconds (longer than the client's timeout),
                 then the connection is closed
``truncated``    HTTP 200, ``application/json``, the body cut in half
``non_json``     HTTP 200, an HTML error page (what a misbehaving proxy returns)
``bad_judge``    HTTP 200, a valid completion whose content is not JSON
                 (only when ``judge_json=True`` or ``judge_marker`` is set, and only
                 on judge requests; tests the judge's own retries)
``disconnect``   the connection is closed without an answer (opt-in: not drawn
                 unless named in ``faults``)
===============  =================================================================

Example::

    with FaultServer(latency_s=0.05, fault_rate=0.3, seed=1) as server:
        cfg = LLMConfig(backend="openai", base_url=server.base_url, model=server.model)
        ...
        assert server.requests >= server.completed

With ``judge_marker`` set, the server plays both roles of a writer-judge loop: a request
whose last user message contains the marker is answered like a judge (JSON), any other
like a writer (text). With ``record=True`` it keeps every request body in ``recorded``
(with its outcome), so a test can tell exactly which calls were made, and made again.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import zlib
from collections import Counter

from aiohttp import web

FAULTS = ("429", "500", "503", "timeout", "truncated", "non_json", "bad_judge")
OPT_IN_FAULTS = ("disconnect",)


def judge_score(text: str) -> int:
    """The deterministic 1-10 score the server's judge gives a message."""
    return 1 + zlib.crc32(text.encode("utf-8")) % 10


class FaultServer:
    """OpenAI-compatible fake endpoint with seeded fault injection (a context manager).

    Args:
        latency_s: Seconds each answer takes (simulates model time; requests overlap).
        fault_rate: Probability that a request gets a fault, spread evenly over ``faults``.
        seed: Seed of the per-request fault draw.
        judge_json: Answer like a judge, ``{"score": n, "reason": "..."}``, and allow the
            ``bad_judge`` fault.
        judge_marker: Answer like a judge only the requests whose last user message
            contains this text (e.g. ``'"score"'``, which the judge prompt asks for), and
            like a writer otherwise; ``bad_judge`` faults then hit judge requests only.
        faults: Fault kinds to draw from (default: all of ``FAULTS`` that apply; add
            ``"disconnect"`` from ``OPT_IN_FAULTS`` by naming it).
        fail_first: The first ``fail_first`` requests always get a fault (then ``fault_rate``).
        fail_from: Every request from the ``fail_from``-th on (counting from 0) gets a fault:
            an endpoint that breaks down in the middle of a batch (None: never).
        retry_after_s: Value of the ``Retry-After`` header on 429 and 503 (None: no header).
        hang_s: How long a ``timeout`` fault keeps the client waiting.
        logprobs: Return ``top_logprobs`` when asked (a real server may not).
        api_key: When set, requests must carry ``Authorization: Bearer <api_key>`` (else 401).
        model: The served model name (``/v1/models``).
        record: Keep every chat request in ``recorded``.

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1``, set on entry.
        requests: Chat-completion requests received.
        completed: Requests answered with a well-formed completion (``bad_judge`` included).
        faults: ``Counter`` of injected faults by kind.
        max_in_flight: Most chat requests open at the same time.
        recorded: With ``record=True``, one dict per chat request in arrival order:
            ``{"n", "body", "outcome"}``; ``outcome`` is None while the request is open,
            then ``"ok"`` (a well-formed completion was sent) or the fault kind.
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        seed: int = 0,
        judge_json: bool = False,
        *,
        faults: tuple[str, ...] | None = None,
        fail_first: int = 0,
        fail_from: int | None = None,
        retry_after_s: float | None = 0.0,
        hang_s: float = 5.0,
        logprobs: bool = True,
        api_key: str | None = None,
        model: str = "fake-model",
        judge_marker: str | None = None,
        record: bool = False,
    ):
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be in [0, 1], got {fault_rate}")
        judges = judge_json or judge_marker is not None
        kinds = faults if faults is not None else tuple(f for f in FAULTS if judges or f != "bad_judge")
        unknown = set(kinds) - set(FAULTS + OPT_IN_FAULTS)
        if unknown or not kinds:
            raise ValueError(f"faults must be a non-empty subset of {FAULTS + OPT_IN_FAULTS}, got {kinds}")
        self.latency_s, self.fault_rate, self.seed, self.judge_json = latency_s, fault_rate, seed, judge_json
        self.fault_kinds, self.fail_first, self.retry_after_s = tuple(kinds), fail_first, retry_after_s
        self.fail_from = fail_from
        self.hang_s, self.logprobs, self.api_key, self.model = hang_s, logprobs, api_key, model
        self.judge_marker, self.record = judge_marker, record
        self.recorded: list[dict] = []
        self.base_url = ""
        self.requests = 0
        self.completed = 0
        self.faults: Counter[str] = Counter()
        self.max_in_flight = 0
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> "FaultServer":
        self._thread = threading.Thread(target=self._serve, name="fault-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("fault server did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"fault server failed to start: {self._error}") from self._error
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # ---- handlers --------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid api key", "invalid_api_key")
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}]}
        )

    def _draw_fault(self, n: int) -> str | None:
        rng = random.Random(f"{self.seed}:{n}")
        failing = n < self.fail_first or (self.fail_from is not None and n >= self.fail_from)
        if failing or rng.random() < self.fault_rate:
            return rng.choice(self.fault_kinds)
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        n = self.requests
        self.requests += 1
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._answer(request, n)
        finally:
            self._in_flight -= 1

    async def _answer(self, request: web.Request, n: int) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid api key", "invalid_api_key")
        try:
            body = await request.json()
            messages = body["messages"]
            last_user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "request body must be JSON with a 'messages' list", "invalid_request_error")
        if not isinstance(last_user, str):  # content parts
            last_user = " ".join(p.get("text", "") for p in last_user if isinstance(p, dict))
        as_judge = self.judge_json if self.judge_marker is None else self.judge_marker in last_user
        entry = {"n": n, "body": body, "outcome": None}
        if self.record:
            self.recorded.append(entry)

        fault = self._draw_fault(n)
        if fault == "bad_judge" and not as_judge:
            fault = None  # a writer answer is never JSON anyway: no fault to inject
        if fault is not None:
            self.faults[fault] += 1
            entry["outcome"] = fault
        if fault == "timeout":
            await self._sleep(self.hang_s)
            fault = "disconnect"  # never answer: the client gave up long ago
        elif self.latency_s > 0:
            await asyncio.sleep(self.latency_s)  # plain sleep: cheaper than _sleep, and short
        if fault in ("429", "503", "500"):
            headers = {}
            if fault != "500" and self.retry_after_s is not None:
                headers["Retry-After"] = f"{self.retry_after_s:g}"
            kind = {"429": "rate_limit_exceeded", "500": "server_error", "503": "overloaded"}[fault]
            return _error(int(fault), f"injected fault {fault}", kind, headers)
        if fault == "disconnect":
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the request quietly
        if fault == "non_json":
            return web.Response(
                status=200, text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"
            )

        payload = self._completion(body, messages, last_user, as_judge, bad_judge=fault == "bad_judge")
        if fault == "truncated":
            raw = json.dumps(payload)
            return web.Response(status=200, text=raw[: len(raw) // 2], content_type="application/json")
        self.completed += 1
        entry["outcome"] = entry["outcome"] or "ok"
        return web.json_response(payload)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the server is stopping."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    def _completion(self, body: dict, messages: list, last_user: str, as_judge: bool, bad_judge: bool) -> dict:
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
        score = judge_score(last_user)
        if bad_judge:
            text = f"I would give this a {score} out of 10, it is fine."
        elif as_judge:
            text = json.dumps({"score": score, "reason": f"scored {score} for: {last_user[:40]}"})
        elif max_tokens == 1:
            text = str(score)
        else:
            text = " ".join(("echo:", *last_user.split())[:max_tokens])
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        choice: dict = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "logprobs": None,
        }
        if self.logprobs and body.get("logprobs"):
            choice["logprobs"] = {"content": [_token_logprobs(score, int(body.get("top_logprobs") or 0))]}
        return {
            "id": f"chatcmpl-fake-{self.requests}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", self.model),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_tokens + len(text.split()),
            },
        }


def _token_logprobs(score: int, top: int) -> dict:
    """Next-token distribution over "1".."10": 0.6 on ``score``, the rest spread evenly."""
    probs = {str(k): (0.6 if k == score else 0.4 / 9) for k in range(1, 11)}
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])[: max(top, 0)]
    entry = lambda tok, p: {"token": tok, "logprob": math.log(p), "bytes": list(tok.encode())}  # noqa: E731
    return {**entry(str(score), probs[str(score)]), "top_logprobs": [entry(t, p) for t, p in ranked]}


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return web.json_response(body, status=status, headers=headers)


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted: ``python -m tests.llm.fault_server --latency 0.2`` (from the repository root).

    Prints the base URL as the first line of stdout (benchmarks read it to run the
    server in its own process, so that it does not share the client's interpreter).
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Fault-injecting OpenAI-compatible chat server on 127.0.0.1.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", nargs="+", default=None, choices=FAULTS + OPT_IN_FAULTS,
                        help="fault kinds to draw from (default: all that apply)")
    parser.add_argument("--retry-after", type=float, default=0.0, help="Retry-After seconds on 429 and 503")
    parser.add_argument("--judge-json", action="store_true", help="answer like a JSON judge")
    parser.add_argument("--judge-marker", default=None, help='answer like a judge only when the prompt holds this text, e.g. \'"score"\'')
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    faults = tuple(args.faults) if args.faults else None
    with FaultServer(args.latency, args.fault_rate, args.seed, args.judge_json, judge_marker=args.judge_marker,
                     faults=faults, retry_after_s=args.retry_after) as server:
        print(server.base_url, flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
