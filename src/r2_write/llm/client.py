"""LLMClient: any backend + the response cache + call statistics.

Every stage talks to models through this class; it never talks to a backend directly.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property

from r2_write.llm.base import ChatBackend, Conversation, EndpointError, Generation, LLMError
from r2_write.llm.cache import ResponseCache, cache_key, model_identity
from r2_write.llm.config import LLMConfig, SamplingParams
from r2_write.progress import Progress

logger = logging.getLogger(__name__)
# model calls and cache hits of every client in this process (per-stage counts: r2_write.hooks)
PROCESS_CALLS: Counter = Counter()


@dataclass
class CallStats:
    """Counters of one client: model calls made, cache hits, tokens, failures (and their errors)."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0
    errors: Counter = field(default_factory=Counter, compare=False)  # error text -> failures

    def _counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "errors"}

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/{k}": float(v) for k, v in self._counts().items()}

    def copy(self) -> "CallStats":
        return CallStats(**self._counts(), errors=Counter(self.errors))

    def since(self, before: "CallStats") -> "CallStats":
        """Counts accumulated after the ``before`` snapshot."""
        counts = {k: v - getattr(before, k) for k, v in self._counts().items()}
        return CallStats(**counts, errors=self.errors - before.errors)


def backend_class(cfg: LLMConfig) -> type:
    """The backend class ``cfg`` names (heavy ones are imported lazily)."""
    if cfg.backend == "transformers":
        from r2_write.llm.transformers_backend import TransformersBackend

        return TransformersBackend
    if cfg.backend == "openai":
        from r2_write.llm.openai_backend import OpenAIBackend

        return OpenAIBackend
    if cfg.backend == "vllm":
        from r2_write.llm.vllm_backend import VLLMBackend

        return VLLMBackend
    raise LLMError(f"unknown backend {cfg.backend!r}; choose one of transformers, openai, vllm")


def build_backend(cfg: LLMConfig) -> ChatBackend:
    """Instantiate the configured backend."""
    return backend_class(cfg)(cfg)


class LLMClient:
    """Batched, cached chat generation.

    Requests are cut into fixed chunks of the *whole* request list (``chunk_size``);
    each chunk is generated and committed to the cache at once, and the seed of a chunk
    depends only on its contents. A killed run therefore resumes with exactly the chunks
    it had not finished, and produces the same outputs an uninterrupted run would.
    Backends that report each item as it completes (the openai backend's ``on_result``)
    get every uncached request of the call at once instead: each successful answer is
    committed (and counted in the progress) the moment it arrives, so a kill repeats only
    the requests that were still in flight, and no chunk waits for the slowest request of
    the one before it (a retried 429 held up every request behind it).
    """

    def __init__(
        self, cfg: LLMConfig, backend: ChatBackend | None = None, cache: ResponseCache | None = None,
        role: str | None = None,
    ):
        self.cfg = cfg
        self.role = role  # the ``llm.<role>`` this client serves, named in its errors
        self._backend = backend  # built on first use: a run answered from the cache never loads a model
        self._backend_lock = threading.Lock()
        self._backend_type = type(backend) if backend is not None else backend_class(cfg)
        self.cache = cache if cache is not None else (ResponseCache(cfg.cache_path) if cfg.cache_path else None)
        self.stats = CallStats()
        self.chunk_size = cfg.batch_size if cfg.backend != "openai" else max(cfg.max_concurrency * 4, 32)
        self._streams = "on_result" in inspect.signature(self._backend_type.generate).parameters

    @property
    def backend(self) -> ChatBackend:
        """The model backend, loaded (local) or connected (endpoint) when first needed."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = build_backend(self.cfg)
        return self._backend

    @property
    def label(self) -> str:
        """``llm.<role>`` (or ``llm``) and the model, as errors name this client."""
        return f"llm.{self.role or '?'}, model {self.cfg.model!r}"

    def _check_endpoint(self) -> None:
        """The backend's one-time endpoint check (openai), its error naming this client's role."""
        check = getattr(self.backend, "check_endpoint", None)
        if check is not None:
            try:
                check()
            except EndpointError as exc:
                raise EndpointError(f"{self.label}: {exc}") from None

    def _key(self, kind: str, conv: Conversation, **extra) -> str:
        return cache_key(kind=kind, backend=self.cfg.backend, model=self._model_id, messages=conv, **extra)

    @cached_property
    def _model_id(self) -> str:
        """The model as cache keys name it: a local checkpoint by its content (:func:`model_identity`)."""
        return self.cfg.model if self.cfg.backend == "openai" else model_identity(self.cfg.model)

    def generate(self, conversations: list[Conversation], sampling: SamplingParams) -> list[Generation]:
        """Generate one completion per conversation, from the cache where possible.

        Failed generations (``error`` set) are returned, counted and never cached.
        """
        before = self.stats.copy()
        keys = [self._key("chat", c, sampling=sampling.model_dump()) for c in conversations]
        out: list[Generation | None] = [None] * len(conversations)
        progress = Progress(len(conversations), f"LLM {self.role or self.cfg.backend} {self.cfg.model}", logger)
        size = max(len(conversations), 1) if self._streams else self.chunk_size  # see the class docstring
        for start in range(0, len(conversations), size):
            idx = list(range(start, min(start + size, len(conversations))))
            cached = self.cache.get_many([keys[i] for i in idx]) if self.cache is not None else {}
            self.stats.cache_hits += len(cached)
            PROCESS_CALLS["cache_hits"] += len(cached)
            todo = [i for i in idx if keys[i] not in cached]
            for i in idx:
                if keys[i] in cached:
                    out[i] = Generation(**cached[keys[i]])
            if len(todo) < len(idx):
                progress.update(len(idx) - len(todo))
            if not todo:
                continue
            chunk_seed = int(cache_key(seed=sampling.seed, keys=[keys[i] for i in idx])[:8], 16)
            chunk_sampling = sampling.model_copy(update={"seed": chunk_seed}) if self.cfg.backend != "openai" else sampling
            convs = [conversations[i] for i in todo]
            self._check_endpoint()
            try:
                if self._streams:
                    gens = self.backend.generate(convs, chunk_sampling,
                                                 on_result=self._on_result([keys[i] for i in todo], progress))
                else:
                    gens = self.backend.generate(convs, chunk_sampling)
            except EndpointError as exc:  # the breaker tripped: answers that arrived are cached
                raise EndpointError(f"{self.label}: {exc}") from None
            fresh = {}
            for i, g in zip(todo, gens):
                out[i] = g
                self.stats.calls += 1
                PROCESS_CALLS["calls"] += 1
                self.stats.prompt_tokens += g.prompt_tokens
                self.stats.completion_tokens += g.completion_tokens
                if not g.ok:
                    self.stats.failures += 1
                    self.stats.errors[g.error] += 1
                elif self.cache is not None and not self._streams:  # a streaming backend's were committed
                    fresh[keys[i]] = asdict(g)
            if not self._streams:
                if fresh:
                    self.cache.put_many(fresh)
                progress.update(len(todo))
        progress.close()
        done = self.stats.since(before)
        logger.info(
            "LLM %s %s: %d requests, %d cache hits, %d model calls, %d failures",
            self.cfg.backend, self.cfg.model, len(conversations), done.cache_hits, done.calls, done.failures,
        )
        return out  # type: ignore[return-value]

    def _on_result(self, keys: list[str], progress: Progress):
        """``on_result`` callback: commit the ``j``-th answer under ``keys[j]`` (failures never) and count it.

        The backend may call it from several threads at once.
        """
        lock = threading.Lock()

        def on_result(j: int, g: Generation) -> None:
            if g.ok and self.cache is not None:
                self.cache.put_many({keys[j]: asdict(g)})
            with lock:
                progress.update(1)

        return on_result

    @property
    def supports_token_probs(self) -> bool:
        return hasattr(self._backend_type, "next_token_probs")

    def next_token_probs(
        self, conversations: list[Conversation], candidates: list[str], assistant_prefix: str = ""
    ) -> list[dict[str, float]]:
        """Cached next-token probabilities of ``candidates`` (backends that expose them)."""
        if not self.supports_token_probs:
            raise LLMError(
                f"backend {self.cfg.backend!r} does not expose token probabilities; "
                "use judge mode 'generate' for this backend"
            )
        keys = [self._key("probs", c, candidates=candidates, prefix=assistant_prefix) for c in conversations]
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        self.stats.cache_hits += len(cached)
        PROCESS_CALLS["cache_hits"] += len(cached)
        todo = [i for i, k in enumerate(keys) if k not in cached]
        fresh = {}
        if todo:
            self._check_endpoint()
        progress = Progress(len(todo), f"LLM {self.role or self.cfg.backend} {self.cfg.model} (probabilities)", logger)
        # a backend that batches on its own may take more per call (probs_chunk_size: the local
        # backend, so that prompts sharing a prefix seldom straddle two calls)
        step = (getattr(self.backend, "probs_chunk_size", None) if todo else None) or self.cfg.batch_size
        for start in range(0, len(todo), step):
            part = todo[start : start + step]
            try:
                probs = self.backend.next_token_probs([conversations[i] for i in part], candidates, assistant_prefix)
            except EndpointError as exc:
                raise EndpointError(f"{self.label}: {exc}") from None
            self.stats.calls += len(part)
            PROCESS_CALLS["calls"] += len(part)
            fresh.update({keys[i]: p for i, p in zip(part, probs)})
            if self.cache is not None:
                self.cache.put_many({keys[i]: fresh[keys[i]] for i in part})
            progress.update(len(part))
        progress.close()
        return [cached[k] if k in cached else fresh[k] for k in keys]


_BACKENDS: dict[str, ChatBackend] = {}


def get_client(cfg: LLMConfig, role: str | None = None) -> LLMClient:
    """A new client for ``cfg`` (serving ``llm.<role>``) over a process-wide backend.

    A local model is loaded once per process and shared by every role that names it, while
    each client keeps its own call statistics (so writer and judge counts stay apart).
    Client-side settings (cache, failure budget) do not make a second backend.
    """
    key = cfg.model_copy(update={"cache_path": None, "max_failed_share": 0.0}).model_dump_json()
    if key not in _BACKENDS:
        _BACKENDS[key] = build_backend(cfg)
    return LLMClient(cfg, backend=_BACKENDS[key], role=role)
