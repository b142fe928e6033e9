"""LLMClient over a scripted backend: caching, chunked resume after a kill, failures, stats."""

from __future__ import annotations

import pytest

from r2_write.llm.base import Generation, LLMError
from r2_write.llm.client import CallStats, LLMClient, build_backend
from r2_write.llm.config import LLMConfig, SamplingParams
from tests.fakes import FakeBackend, make_client, seeded_respond

SAMPLING = SamplingParams(temperature=0.7, max_new_tokens=16, seed=3)


def _convs(n: int) -> list:
    return [[{"role": "user", "content": f"prompt {i}"}] for i in range(n)]


def test_generate_returns_one_generation_per_conversation(fake_client):
    fake_client.backend.respond = lambda conv, s: conv[-1]["content"].upper()
    gens = fake_client.generate(_convs(5), SAMPLING)
    assert [g.text for g in gens] == [f"PROMPT {i}" for i in range(5)]
    assert fake_client.stats.calls == 5 and fake_client.stats.cache_hits == 0
    assert [len(b) for b in fake_client.backend.batches] == [4, 1]  # chunks of batch_size


def test_cache_hits_across_client_instances(tmp_path):
    path = tmp_path / "cache.sqlite"
    first = make_client(FakeBackend(respond=seeded_respond), cache_path=path)
    out1 = first.generate(_convs(6), SAMPLING)
    assert first.stats.calls == 6 and first.stats.cache_hits == 0

    backend = FakeBackend(respond=lambda c, s: "SHOULD NOT BE CALLED")
    second = make_client(backend, cache_path=path)
    out2 = second.generate(_convs(6), SAMPLING)
    assert [g.text for g in out2] == [g.text for g in out1]
    assert second.stats.calls == 0 and second.stats.cache_hits == 6
    assert backend.batches == []

    # a different sampling setting is a different key: a miss
    second.generate(_convs(1), SAMPLING.model_copy(update={"seed": 4}))
    assert second.stats.calls == 1


def test_partial_cache_calls_only_missing(tmp_path):
    path = tmp_path / "cache.sqlite"
    make_client(FakeBackend(respond=seeded_respond), cache_path=path).generate(_convs(3), SAMPLING)
    backend = FakeBackend(respond=seeded_respond)
    client = make_client(backend, cache_path=path)
    client.generate(_convs(5), SAMPLING)
    assert client.stats.cache_hits == 3 and client.stats.calls == 2
    assert [c[-1]["content"] for b in backend.batches for c in b] == ["prompt 3", "prompt 4"]


def test_killed_run_resumes_identically_without_repeating_chunks(tmp_path):
    convs = _convs(10)  # chunks of 4: [0-3], [4-7], [8-9]
    reference = make_client(FakeBackend(respond=seeded_respond)).generate(convs, SAMPLING)

    path = tmp_path / "cache.sqlite"
    killed = make_client(FakeBackend(respond=seeded_respond, fail_after=1), cache_path=path)
    with pytest.raises(RuntimeError, match="killed"):
        killed.generate(convs, SAMPLING)
    killed.cache.close()

    backend = FakeBackend(respond=seeded_respond)
    rerun = make_client(backend, cache_path=path)
    out = rerun.generate(convs, SAMPLING)
    assert [g.text for g in out] == [g.text for g in reference]
    assert rerun.stats.cache_hits == 4 and rerun.stats.calls == 6
    done_first = {c[-1]["content"] for c in convs[:4]}
    assert not done_first & {c[-1]["content"] for b in backend.batches for c in b}


def test_chunk_seed_depends_on_contents_not_position():
    a, b = FakeBackend(respond=seeded_respond), FakeBackend(respond=seeded_respond)
    make_client(a).generate(_convs(8), SAMPLING)
    make_client(b).generate(_convs(8)[4:], SAMPLING)
    assert a.seeds[1] == b.seeds[0]  # the same chunk, reached from different call shapes
    assert a.seeds[0] != a.seeds[1]


def test_failed_generations_are_returned_counted_and_not_cached(tmp_path):
    path = tmp_path / "cache.sqlite"

    def flaky(conv, s):
        return Generation(text="", error="HTTP 500") if conv[-1]["content"].endswith("1") else "fine"

    client = make_client(FakeBackend(respond=flaky), cache_path=path)
    gens = client.generate(_convs(3), SAMPLING)
    assert [g.ok for g in gens] == [True, False, True]
    assert gens[1].error == "HTTP 500"
    assert client.stats.failures == 1 and client.stats.calls == 3
    assert len(client.cache) == 2

    retry_backend = FakeBackend(respond=lambda c, s: "recovered")
    retry = make_client(retry_backend, cache_path=path)
    gens = retry.generate(_convs(3), SAMPLING)
    assert [g.text for g in gens] == ["fine", "recovered", "fine"]
    assert retry.stats.calls == 1 and retry.stats.cache_hits == 2


def test_next_token_probs_cached(tmp_path, fake_backend):
    fake_backend.probs = lambda conv, cands, prefix: {c: (1.0 if c == "7" else 0.0) for c in cands}
    client = make_client(fake_backend, cache_path=tmp_path / "c.sqlite")
    cands = [str(i) for i in range(1, 11)]
    first = client.next_token_probs(_convs(5), cands, '{"score": ')
    assert all(p["7"] == 1.0 for p in first)
    assert client.stats.calls == 5 and len(fake_backend.prob_batches) == 2
    again = client.next_token_probs(_convs(5), cands, '{"score": ')
    assert again == first and client.stats.cache_hits == 5 and client.stats.calls == 5


def test_next_token_probs_unsupported_backend():
    class NoProbs:
        name, model = "fake", "m"

        def generate(self, conversations, sampling):
            return [Generation("x") for _ in conversations]

    client = LLMClient(LLMConfig(cache_path=None), backend=NoProbs())
    assert not client.supports_token_probs
    with pytest.raises(LLMError, match="judge mode 'generate'"):
        client.next_token_probs(_convs(1), ["1"])


def test_call_stats_since_and_metrics():
    before = CallStats(calls=2, cache_hits=1, prompt_tokens=10, completion_tokens=5, failures=0)
    now = before.copy()
    now.calls += 3
    now.failures += 1
    assert before.calls == 2  # copy is independent
    delta = now.since(before)
    assert delta == CallStats(calls=3, cache_hits=0, prompt_tokens=0, completion_tokens=0, failures=1)
    assert delta.as_metrics("synthesis/writer") == {
        "synthesis/writer/calls": 3.0,
        "synthesis/writer/cache_hits": 0.0,
        "synthesis/writer/prompt_tokens": 0.0,
        "synthesis/writer/completion_tokens": 0.0,
        "synthesis/writer/failures": 1.0,
    }


def test_build_backend_unknown_backend_message():
    cfg = LLMConfig.model_construct(backend="nope", model="m")
    with pytest.raises(LLMError, match="unknown backend 'nope'"):
        build_backend(cfg)


class StreamingBackend(FakeBackend):
    """Reports each answer through ``on_result`` as the openai backend does; ``kill_after`` raises
    once that many answers were reported (a kill in the middle of the call)."""

    def __init__(self, kill_after: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.kill_after = kill_after

    def generate(self, conversations, sampling, on_result=None):
        gens = super().generate(conversations, sampling)
        for j, g in enumerate(gens):
            if self.kill_after is not None and j == self.kill_after:
                raise RuntimeError("backend killed")
            if on_result is not None:
                on_result(j, g)
        return gens


def test_a_streaming_backend_gets_every_uncached_request_at_once_and_each_answer_is_committed_and_counted(
    tmp_path, monkeypatch
):
    counted = []

    class Recorder:
        def __init__(self, total, *args, **kwargs):
            self.total, self.done = total, 0
            counted.append(self)

        def update(self, n=1):
            self.done += n

        def close(self):
            pass

    monkeypatch.setattr("r2_write.llm.client.Progress", Recorder)
    path = tmp_path / "cache.sqlite"
    make_client(FakeBackend(respond=seeded_respond), cache_path=path).generate(_convs(3), SAMPLING)
    backend = StreamingBackend(respond=seeded_respond)
    client = make_client(backend, cache_path=path)  # chunk_size 4: a chunked backend would get 4 calls
    out = client.generate(_convs(13), SAMPLING)
    assert [len(b) for b in backend.batches] == [10]  # no chunk waits for the slowest request of the one before
    assert client.stats.calls == 10 and client.stats.cache_hits == 3 and len(client.cache) == 13
    assert all(g.ok for g in out)
    assert (counted[-1].done, counted[-1].total) == (13, 13)

    no_cache = make_client(StreamingBackend(respond=seeded_respond))  # counted as they arrive without a cache too
    no_cache.generate(_convs(5), SAMPLING)
    assert (counted[-1].done, counted[-1].total) == (5, 5)


def test_a_kill_in_the_middle_of_a_streaming_call_repeats_only_the_unanswered_requests(tmp_path):
    path = tmp_path / "cache.sqlite"
    killed = make_client(StreamingBackend(respond=seeded_respond, kill_after=4), cache_path=path)
    with pytest.raises(RuntimeError, match="killed"):
        killed.generate(_convs(10), SAMPLING)
    killed.cache.close()

    backend = StreamingBackend(respond=seeded_respond)
    rerun = make_client(backend, cache_path=path)
    rerun.generate(_convs(10), SAMPLING)
    assert rerun.stats.cache_hits == 4 and rerun.stats.calls == 6
    assert [c[-1]["content"] for b in backend.batches for c in b] == [f"prompt {i}" for i in range(4, 10)]


def test_a_local_checkpoint_is_cached_by_content_so_a_new_version_of_the_same_weights_hits(tmp_path):
    """Kedro saves every run's model under a new version path: identical weights must reuse the answers."""
    import shutil

    v1 = tmp_path / "sft" / "v1"
    v1.mkdir(parents=True)
    (v1 / "config.json").write_text("{}")
    (v1 / "model.safetensors").write_bytes(b"weights")
    v2 = tmp_path / "sft" / "v2"
    shutil.copytree(v1, v2)
    cache = str(tmp_path / "cache.sqlite")
    convs = [[{"role": "user", "content": "Write a haiku."}]]

    def answer(model_dir):
        backend = FakeBackend()
        client = LLMClient(LLMConfig(backend="transformers", model=str(model_dir), cache_path=cache), backend=backend)
        return client.generate(convs, SamplingParams(seed=1)), client.stats

    first, stats1 = answer(v1)
    second, stats2 = answer(v2)
    assert (stats1.calls, stats2.calls, stats2.cache_hits) == (1, 0, 1) and second[0].text == first[0].text
    (v2 / "model.safetensors").write_bytes(b"retrained")  # other weights at a known path: no stale answers
    _, stats3 = answer(v2)
    assert stats3.calls == 1
