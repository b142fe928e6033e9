"""Pluggable retrievers for DeepResearchGym report writing: one interface, three kinds.

Every retriever has ``retrieve(query, k) -> list[{"url": str, "text": str}]`` (best first):

* :class:`ClosedBook` returns nothing: the writer answers from its own knowledge (reports
  then carry no source URLs and score 0 on the Support criterion by design).
* :class:`BM25Retriever` ranks a local corpus the user points at (JSON lines with ``url``
  and ``text``) with ``bm25s``: the offline stand-in for web search.
* :class:`HTTPSearchRetriever` calls a search endpoint with the DeepResearchGym search API
  shape (checked against its public client code and docs): ``GET <url>?query=...&k=N`` with
  an optional ``x-api-key`` header, answering ``{"results": [...]}`` where each result is a
  Base64-encoded JSON document with at least ``url`` and ``text`` (hosted endpoints:
  ``https://clueweb22.us/search`` for ClueWeb22, ``.../fineweb/search`` for FineWeb).
  Self-hosted servers may take ``POST`` with a JSON body ``{"query", "k"}`` instead and may
  return plain ``{"url", "text"}`` objects; both are accepted.

``build_retriever(cfg)`` builds one from ``params:evaluation.deepresearchgym.retriever``.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from r2_write.config import parse_params

logger = logging.getLogger(__name__)

Passage = dict[str, str]


class RetrievalError(RuntimeError):
    """A search could not be made; the message says what is wrong."""


class Retriever(Protocol):
    """``retrieve(query, k)`` returns up to ``k`` passages ``{"url", "text"}``, best first."""

    def retrieve(self, query: str, k: int) -> list[Passage]: ...


class RetrieverConfig(BaseModel):
    """``params:evaluation.deepresearchgym.retriever``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["closed_book", "bm25", "http"] = Field("closed_book", description="closed_book, bm25 or http.")
    k: int = Field(5, ge=1, description="Passages retrieved per query.")
    max_chars: int = Field(4000, ge=100, description="Characters kept of each passage's text.")
    corpus_path: str | None = Field(None, description="bm25: JSON-lines corpus, one {url, text} per line.")
    url: str | None = Field(None, description="http: search endpoint, e.g. https://clueweb22.us/fineweb/search.")
    method: Literal["GET", "POST"] = Field("GET", description="http: GET query string (DeepResearchGym) or POST JSON.")
    api_key_env: str | None = Field(None, description="http: NAME of the env variable holding the x-api-key.")
    timeout_s: float = Field(30.0, gt=0, description="http: per-request timeout in seconds.")
    max_retries: int = Field(2, ge=0, description="http: retries on timeouts, connection errors and 5xx.")

    @model_validator(mode="after")
    def _needs(self) -> "RetrieverConfig":
        if self.kind == "bm25" and not self.corpus_path:
            raise ValueError("kind 'bm25' needs corpus_path (a JSON-lines file with url and text)")
        if self.kind == "http" and not self.url:
            raise ValueError("kind 'http' needs url (the search endpoint)")
        return self


class ClosedBook:
    """No retrieval: always returns an empty list."""

    def retrieve(self, query: str, k: int) -> list[Passage]:
        return []


class BM25Retriever:
    """BM25 over a local JSON-lines corpus (``{"url": ..., "text": ...}`` per line).

    >>> r = BM25Retriever([{"url": "u1", "text": "solar power"}, {"url": "u2", "text": "cats"}])
    >>> [p["url"] for p in r.retrieve("solar energy", 2)]
    ['u1']
    """

    def __init__(self, docs: list[Passage], max_chars: int = 4000):
        import bm25s

        if not docs:
            raise RetrievalError("BM25 corpus is empty")
        self.docs = docs
        self.max_chars = max_chars
        self._bm25s = bm25s
        self._index = bm25s.BM25()
        self._index.index(self._tokenize([d["text"] for d in docs]), show_progress=False)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, max_chars: int = 4000) -> "BM25Retriever":
        """Read the corpus file; each line needs a non-empty ``url`` and ``text``."""
        p = Path(path)
        if not p.is_file():
            raise RetrievalError(f"BM25 corpus {p} not found (resolved to {p.resolve()})")
        docs = []
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RetrievalError(f"{p} line {n}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not str(obj.get("url", "")).strip() or not str(obj.get("text", "")).strip():
                raise RetrievalError(f"{p} line {n}: each line needs non-empty 'url' and 'text'")
            docs.append({"url": str(obj["url"]).strip(), "text": str(obj["text"])})
        return cls(docs, max_chars)

    def _tokenize(self, texts: list[str]):
        return self._bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)

    def retrieve(self, query: str, k: int) -> list[Passage]:
        k = min(k, len(self.docs))
        ids, scores = self._index.retrieve(self._tokenize([query]), k=k, show_progress=False)
        return [
            {"url": self.docs[i]["url"], "text": self.docs[i]["text"][: self.max_chars]}
            for i, s in zip(ids[0].tolist(), scores[0].tolist())
            if s > 0  # no query term in the document: not a match
        ]


class HTTPSearchRetriever:
    """A search endpoint with the DeepResearchGym API shape (see the module docstring)."""

    def __init__(
        self,
        url: str,
        method: str = "GET",
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        max_chars: int = 4000,
        backoff_s: float = 0.5,
    ):
        self.url, self.method, self.timeout_s = url, method.upper(), timeout_s
        self.max_retries, self.max_chars, self.backoff_s = max_retries, max_chars, backoff_s
        self.headers = {"Accept": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise RetrievalError(f"environment variable {api_key_env} (the search API key) is not set")
            self.headers["x-api-key"] = key

    def _request(self, query: str, k: int) -> urllib.request.Request:
        if self.method == "POST":
            body = json.dumps({"query": query, "k": k}).encode("utf-8")
            return urllib.request.Request(
                self.url, data=body, headers={**self.headers, "Content-Type": "application/json"}, method="POST"
            )
        sep = "&" if urllib.parse.urlparse(self.url).query else "?"
        return urllib.request.Request(
            f"{self.url}{sep}{urllib.parse.urlencode({'query': query, 'k': k})}", headers=self.headers
        )

    def retrieve(self, query: str, k: int) -> list[Passage]:
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with urllib.request.urlopen(self._request(query, k), timeout=self.timeout_s) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                return self._passages(payload)[:k]
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code < 500 and exc.code != 429:
                    break  # a client error does not heal on retry
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                last = f"response is not JSON ({exc})"
        raise RetrievalError(f"search request to {self.url} failed: {last}")

    def _passages(self, payload) -> list[Passage]:
        results = payload.get("results") if isinstance(payload, dict) else payload
        if not isinstance(results, list):
            raise RetrievalError(f"search response from {self.url} has no 'results' list")
        out = []
        for item in results:
            doc = _decode_result(item)
            if doc is None:
                logger.warning("search result from %s skipped: not a document with url and text", self.url)
                continue
            out.append({"url": doc["url"], "text": doc["text"][: self.max_chars]})
        return out


def _decode_result(item) -> Passage | None:
    """A result as a ``{"url", "text"}`` dict: plain objects, or Base64-encoded JSON strings."""
    if isinstance(item, str):
        try:
            item = json.loads(base64.b64decode(item, validate=True).decode("utf-8", errors="replace"))
        except (binascii.Error, ValueError):
            return None
    if not isinstance(item, dict):
        return None
    text = item.get("text", item.get("content"))
    url = item.get("url")
    if not isinstance(url, str) or not isinstance(text, str):
        return None
    return {"url": url, "text": text}


def build_retriever(cfg: RetrieverConfig | dict | None) -> Retriever:
    """The configured retriever (``kind``: closed_book, bm25, http).

    >>> isinstance(build_retriever({"kind": "closed_book"}), ClosedBook)
    True
    """
    cfg = parse_params(RetrieverConfig, cfg, "evaluation.deepresearchgym.retriever")
    if cfg.kind == "bm25":
        return BM25Retriever.from_jsonl(cfg.corpus_path, cfg.max_chars)
    if cfg.kind == "http":
        return HTTPSearchRetriever(
            cfg.url, cfg.method, cfg.api_key_env, cfg.timeout_s, cfg.max_retries, cfg.max_chars
        )
    return ClosedBook()
