"""The local transformers backend's probabilities: prompts sharing a prefix are scored from one
prefill of it, with the same probabilities as separate prompts."""

from __future__ import annotations

import pytest

from r2_write.llm.client import LLMClient
from r2_write.llm.config import LLMConfig
from r2_write.llm.transformers_backend import TransformersBackend, plan_shared_prefixes
from r2_write.prompts.judge import SCORE_PREFIX, SCORE_TOKENS, criterion_messages
from r2_write.prompts.report_judge import KEYPOINT_PREFIX, keypoint_messages
from r2_write.rubrics.schema import BANDS, Criterion

RESPONSES = [
    "The rain fell softly on the roof while the city slept, and the gutters hummed. " * 4,
    "Costs rose sharply in the third quarter; logistics and suppliers explain most of it. " * 3,
]


def _criterion(name: str) -> Criterion:
    return Criterion(name=name, criteria_description=f"Is the text {name.lower()}?", **{b: f"{name} {b}" for b in BANDS})


CRITERIA = [_criterion(n) for n in ("Clarity", "Depth", "Style", "Tone", "Form")]


def _rubric_convs() -> list:
    """Five criteria for each of two responses to one query, and one unrelated short prompt."""
    convs = [criterion_messages("Write a short text.", r, c) for r in RESPONSES for c in CRITERIA]
    return convs + [[{"role": "user", "content": "Rate this: ok."}]]


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir):
    """The tiny random model with its weights (not norms) times four: at their initial scale its
    next-token distribution is so flat that a wrong position or mask moves a probability by only
    ~3e-4 of itself; here by several percent (float noise stays ~2e-6)."""
    import torch

    torch.set_num_threads(1)
    backend = TransformersBackend(LLMConfig(model=tiny_model_dir, device="cpu", batch_size=3, cache_path=None))
    with torch.no_grad():
        for name, p in backend.lm.named_parameters():
            if "norm" not in name:
                p.mul_(4)
    return backend


class _TokenCounter:
    """Counts the input tokens (and forward passes) of the backend's model."""

    def __init__(self, backend: TransformersBackend):
        self.tokens, self.passes = 0, 0
        self._handle = backend.lm.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.tokens += args[0].numel()
        self.passes += 1

    def close(self) -> None:
        self._handle.remove()


def _probs(backend: TransformersBackend, convs, candidates, prefix, share: bool) -> list[dict]:
    backend.share_prefixes = share
    try:
        return backend.next_token_probs(convs, candidates, prefix)
    finally:
        backend.share_prefixes = True


def _assert_close(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-4, abs=1e-12), k


def _ids(backend: TransformersBackend, convs, prefix: str) -> list[list[int]]:
    texts = [backend.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) + prefix for c in convs]
    return backend.tok(texts, add_special_tokens=False)["input_ids"]


def test_plan_groups_the_rows_of_one_prefix_and_leaves_the_rest_alone():
    common = list(range(100))
    ids = [common + [1000, 1], [5, 6, 7], common + [2000], common + [1000, 2]]
    assert plan_shared_prefixes(ids, min_shared=64) == ([(100, [0, 2, 3])], [1])


def test_plan_falls_back_when_prefixes_do_not_share():
    ids = [list(range(i, i + 200)) for i in range(4)]  # all start differently
    assert plan_shared_prefixes(ids, min_shared=8) == ([], [0, 1, 2, 3])
    short = [[1] * 10 + [2], [1] * 10 + [3]]  # ten shared tokens: under the minimum
    assert plan_shared_prefixes(short, min_shared=64) == ([], [0, 1])
    assert plan_shared_prefixes([], min_shared=8) == ([], [])
    assert plan_shared_prefixes([[1, 2, 3]], min_shared=1) == ([], [0])


def test_plan_keeps_a_token_of_its_own_for_every_row():
    """Identical prompts (and one that is a prefix of another) still end in a token of their own."""
    row = list(range(80))
    groups, alone = plan_shared_prefixes([row, list(row), row + [7]], min_shared=16)
    assert groups == [(79, [0, 1, 2])] and alone == []


def test_plan_prefers_the_long_prefix_of_each_response_over_the_short_one_of_the_query():
    query, r1, r2 = list(range(100)), list(range(1000, 1500)), list(range(2000, 2500))
    ids = [query + r + [9000 + c] for r in (r1, r2) for c in range(5)]
    groups, alone = plan_shared_prefixes(ids, min_shared=64)
    assert groups == [(600, [0, 1, 2, 3, 4]), (600, [5, 6, 7, 8, 9])] and alone == []


def test_shared_prefix_probabilities_equal_separate_prompts(tiny_backend):
    """The criteria of each response share a prefix (response before criterion); "10" is a two-token candidate."""
    convs = _rubric_convs()
    groups, alone = plan_shared_prefixes(_ids(tiny_backend, convs, SCORE_PREFIX), tiny_backend.min_shared_tokens)
    assert [rows for _, rows in groups] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and alone == [10]

    shared = _probs(tiny_backend, convs, SCORE_TOKENS, SCORE_PREFIX, share=True)
    separate = _probs(tiny_backend, convs, SCORE_TOKENS, SCORE_PREFIX, share=False)
    _assert_close(shared, separate)
    one_by_one = [_probs(tiny_backend, [c], SCORE_TOKENS, SCORE_PREFIX, share=False)[0] for c in convs]
    _assert_close(shared, one_by_one)
    assert all(0 < sum(p.values()) <= 1 + 1e-6 for p in shared)


def test_key_points_of_one_report_share_its_prefill(tiny_backend):
    report = RESPONSES[0] + RESPONSES[1]
    convs = [keypoint_messages(f"Key point number {k}: something about topic {k}.", report) for k in range(8)]
    ids = _ids(tiny_backend, convs, KEYPOINT_PREFIX)
    groups, alone = plan_shared_prefixes(ids, tiny_backend.min_shared_tokens)
    assert [rows for _, rows in groups] == [list(range(8))] and alone == []
    report_tokens = len(tiny_backend.tok.encode(report, add_special_tokens=False))
    assert groups[0][0] > report_tokens  # the instructions and the whole report are shared

    candidates = ["Supported", "Om", "Contr"]  # multi-token candidates too
    counter = _TokenCounter(tiny_backend)
    try:
        shared = _probs(tiny_backend, convs, candidates, KEYPOINT_PREFIX, share=True)
        used = counter.tokens
        separate = _probs(tiny_backend, convs, candidates, KEYPOINT_PREFIX, share=False)
        used_separately = counter.tokens - used
    finally:
        counter.close()
    _assert_close(shared, separate)
    assert used < used_separately / 3  # the report went through the model once, not eight times


def test_cache_keys_per_query_are_unchanged_by_sharing(tiny_backend, tmp_path):
    """Each prompt is cached under its own key: a run without sharing reads what a shared run wrote,
    and a partly cached batch computes only the rest, with the same values."""
    convs = _rubric_convs()
    cfg = tiny_backend.cfg.model_copy(update={"cache_path": str(tmp_path / "cache.sqlite")})
    shared_client = LLMClient(cfg, backend=tiny_backend)
    first = shared_client.next_token_probs(convs[:3], SCORE_TOKENS, SCORE_PREFIX)  # partly cached later
    assert shared_client.stats.calls == 3
    full = shared_client.next_token_probs(convs, SCORE_TOKENS, SCORE_PREFIX)
    assert shared_client.stats.calls == len(convs) and shared_client.stats.cache_hits == 3
    assert full[:3] == first

    tiny_backend.share_prefixes = False
    try:
        reader = LLMClient(cfg, backend=tiny_backend)
        assert reader.next_token_probs(convs, SCORE_TOKENS, SCORE_PREFIX) == full
        assert reader.stats.calls == 0 and reader.stats.cache_hits == len(convs)
        _assert_close(full, tiny_backend.next_token_probs(convs, SCORE_TOKENS, SCORE_PREFIX))
    finally:
        tiny_backend.share_prefixes = True


def test_client_hands_the_backend_more_than_a_batch_when_it_shares(tiny_backend):
    """The client calls the backend once for eleven prompts (batch size 3): the groups stay whole."""
    calls = []
    original = tiny_backend.next_token_probs

    def spy(convs, *args):
        calls.append(len(convs))
        return original(convs, *args)

    client = LLMClient(tiny_backend.cfg, backend=tiny_backend)
    tiny_backend.next_token_probs = spy
    try:
        client.next_token_probs(_rubric_convs(), SCORE_TOKENS, SCORE_PREFIX)
    finally:
        del tiny_backend.next_token_probs
    assert calls == [11] and tiny_backend.probs_chunk_size == 24


@pytest.mark.slow
def test_shared_prefix_on_the_embedded_model(embedded_client):
    backend = embedded_client.backend
    convs = [criterion_messages("Write a short text.", RESPONSES[0], c) for c in CRITERIA[:3]]
    shared = _probs(backend, convs, SCORE_TOKENS, SCORE_PREFIX, share=True)
    separate = _probs(backend, convs, SCORE_TOKENS, SCORE_PREFIX, share=False)
    _assert_close(shared, separate)
    assert sum(shared[0].values()) > 0.5  # a real model puts its mass on the score tokens
