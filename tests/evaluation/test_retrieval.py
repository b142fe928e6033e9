"""Retrievers: closed book, BM25 on a small corpus, HTTP search against a local server."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from r2_write.config import ConfigError
from r2_write.evaluation.retrieval import (
    BM25Retriever,
    ClosedBook,
    HTTPSearchRetriever,
    RetrievalError,
    build_retriever,
)

DOCS = [
    {"url": "https://a.org/solar", "text": "Solar panels convert sunlight into electricity; solar energy is renewable."},
    {"url": "https://b.org/wind", "text": "Wind turbines turn wind energy into electricity."},
    {"url": "https://c.org/cats", "text": "Cats sleep for most of the day."},
    {"url": "https://d.org/doping", "text": "Athletes cheat with doping because winning pays."},
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n\n", encoding="utf-8")
    return path


def test_closed_book():
    assert ClosedBook().retrieve("anything", 5) == []
    assert isinstance(build_retriever(None), ClosedBook)


def test_bm25_ranks_matching_documents(corpus):
    r = build_retriever({"kind": "bm25", "corpus_path": str(corpus), "k": 2})
    assert isinstance(r, BM25Retriever)
    hits = r.retrieve("solar energy electricity", 2)
    assert [h["url"] for h in hits] == ["https://a.org/solar", "https://b.org/wind"]
    assert set(hits[0]) == {"url", "text"}
    assert [h["url"] for h in r.retrieve("why do athletes cheat", 10)] == ["https://d.org/doping"]  # k > corpus, 1 match
    assert r.retrieve("zebra quantum", 3) == []  # no shared term: no passage


def test_bm25_truncates_and_validates(corpus, tmp_path):
    assert len(BM25Retriever.from_jsonl(corpus, max_chars=100).retrieve("cats", 1)[0]["text"]) <= 100
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"url": "u", "text": "ok"}\n{"text": "no url"}\n', encoding="utf-8")
    with pytest.raises(RetrievalError, match="line 2"):
        BM25Retriever.from_jsonl(bad)
    with pytest.raises(RetrievalError, match="not found"):
        BM25Retriever.from_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="corpus_path"):
        build_retriever({"kind": "bm25"})


class _SearchHandler(BaseHTTPRequestHandler):
    """DeepResearchGym-shaped search: GET ?query=&k= -> {"results": [base64 JSON docs]}."""

    calls: list = []
    fail_first: int = 0

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, code: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        url = urlparse(self.path)
        q = parse_qs(url.query)
        type(self).calls.append(("GET", url.path, q, self.headers.get("x-api-key")))
        if url.path == "/unauthorized":
            return self._reply(401, {"detail": "Invalid or missing API Key"})
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            return self._reply(503, {"detail": "busy"})
        k = int(q["k"][0])
        docs = [base64.b64encode(json.dumps({**d, "id": str(i)}).encode()).decode() for i, d in enumerate(DOCS)]
        return self._reply(200, {"results": docs[:k] + ["not-base64!!"]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(("POST", self.path, body, self.headers.get("x-api-key")))
        return self._reply(200, {"results": [{"url": d["url"], "content": d["text"]} for d in DOCS][: body["k"]]})


@pytest.fixture
def server():
    _SearchHandler.calls, _SearchHandler.fail_first = [], 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SearchHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_get_decodes_base64_results(server, monkeypatch):
    monkeypatch.setenv("TEST_SEARCH_KEY", "s3cret")
    r = build_retriever({"kind": "http", "url": f"{server}/search", "api_key_env": "TEST_SEARCH_KEY", "k": 2})
    hits = r.retrieve("why do people cheat in sports", 2)
    assert hits == [{"url": d["url"], "text": d["text"]} for d in DOCS[:2]]
    method, path, query, key = _SearchHandler.calls[0]
    assert (method, path, key) == ("GET", "/search", "s3cret")
    assert query == {"query": ["why do people cheat in sports"], "k": ["2"]}


def test_http_post_plain_objects(server):
    hits = HTTPSearchRetriever(f"{server}/search", method="POST").retrieve("solar", 3)
    assert [h["url"] for h in hits] == [d["url"] for d in DOCS[:3]]
    assert _SearchHandler.calls[0][2] == {"query": "solar", "k": 3}


def test_http_retries_server_errors_not_client_errors(server):
    _SearchHandler.fail_first = 2
    r = HTTPSearchRetriever(f"{server}/search", max_retries=2, backoff_s=0.0)
    assert len(r.retrieve("q", 1)) == 1 and len(_SearchHandler.calls) == 3
    with pytest.raises(RetrievalError, match="HTTP 401"):
        HTTPSearchRetriever(f"{server}/unauthorized", max_retries=3, backoff_s=0.0).retrieve("q", 1)
    assert len(_SearchHandler.calls) == 4  # 401: no retry


def test_http_unreachable_and_missing_key(monkeypatch):
    with pytest.raises(RetrievalError, match="failed"):
        HTTPSearchRetriever("http://127.0.0.1:9/search", max_retries=0, timeout_s=2).retrieve("q", 1)
    monkeypatch.delenv("NO_SUCH_SEARCH_KEY", raising=False)
    with pytest.raises(RetrievalError, match="NO_SUCH_SEARCH_KEY"):
        HTTPSearchRetriever("http://127.0.0.1:9/search", api_key_env="NO_SUCH_SEARCH_KEY")
    with pytest.raises(ConfigError, match="url"):
        build_retriever({"kind": "http"})
