"""Token offsets without decoding every prefix (rl/rollout.py decode_with_offsets): equal to the old prefix decoding.

The old fallback (sampled ids that are not the tokenizer's own tokenization of their text)
decoded ``ids[:i+1]`` for every ``i``: quadratic, about 66 s per 25k-token row. The new one
decodes short windows from anchors. Both run here on the embedded model's tokenizer
(SmolLM2, byte-level BPE, data/06_models/base_model) over real texts: trajectories rendered
from WritingBench queries (English and Chinese, so multi-byte characters split across tokens),
tokenized non-canonically, and responses sampled from the embedded model itself.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from r2_write.rl.rollout import _prefix_lengths, decode_with_offsets
from r2_write.trajectory import Segment, Trajectory, render

WRITINGBENCH = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "writingbench"


def old_decode_with_offsets(tokenizer, ids):
    """The previous implementation (before the windowed prefix lengths), kept here as the reference."""
    special = set(tokenizer.all_special_ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    plain = [t for t in ids if t not in special]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if enc["input_ids"] == plain:
        spans = [tuple(o) for o in enc["offset_mapping"]]
    else:
        spans, prev = [], 0
        for i in range(len(plain)):
            end = min(max(len(tokenizer.decode(plain[: i + 1], skip_special_tokens=True)), prev), len(text))
            spans.append((prev, end))
            prev = end
    offsets, pos, it = [], 0, iter(spans)
    for t in ids:
        if t in special:
            offsets.append((pos, pos))
        else:
            offsets.append(next(it))
            pos = offsets[-1][1]
    return text, offsets


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def real_trajectories(n: int) -> list[str]:
    """Trajectories in the project's format whose segments are real WritingBench texts (queries and criteria)."""
    rows = []
    for name in ("length_subset.jsonl", "format_subset.jsonl"):
        path = WRITINGBENCH / name
        if not path.exists():
            pytest.skip(f"{path} missing")
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    chinese = [r for r in rows if any("\u4e00" <= ch <= "\u9fff" for ch in r["query"])]
    picked = random.Random(0).sample([r for r in rows if r not in chinese], n - 2) + chinese[:2]
    out = []
    for row in picked:
        q = row["query"]
        criteria = json.dumps(row.get("criteria") or row.get("checklist") or "", ensure_ascii=False)
        t = Trajectory([Segment("plan", q[:120]), Segment("draft", q[:400]),
                        Segment("reflection", "The draft lacks: " + criteria[:200]),
                        Segment("revision", q[100:500])], answer=q[-300:])
        out.append(render(t))
    return out


def scrambled_ids(tokenizer, text: str, seed: int) -> list[int]:
    """Non-canonical ids of ``text``: its pieces (cut at random characters) tokenized one by one, then EOS."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, len(text) // 6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    ids = [i for p in pieces for i in tokenizer(p, add_special_tokens=False)["input_ids"]]
    return ids + [tokenizer.eos_token_id]


def test_real_trajectories_get_the_old_offsets(tokenizer):
    texts = real_trajectories(6)
    assert any(ord(ch) > 0x4E00 for t in texts for ch in t)  # multi-byte characters are in
    for k, text in enumerate(texts):
        ids = scrambled_ids(tokenizer, text, k)
        plain = ids[:-1]
        assert tokenizer(tokenizer.decode(plain), add_special_tokens=False)["input_ids"] != plain  # the fallback path
        assert decode_with_offsets(tokenizer, ids) == old_decode_with_offsets(tokenizer, ids), k


@pytest.mark.slow
def test_sampled_responses_get_the_old_offsets(tokenizer, embedded_model_dir):
    """Ids sampled by the embedded model (what PPO scores), hot enough to leave the tokenizer's own tokenization."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(embedded_model_dir).eval()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Write a short poem about rain, in English "
                                             "and in Chinese."}], tokenize=False, add_generation_prompt=True)
    enc = tokenizer([prompt] * 2, return_tensors="pt")
    with torch.no_grad():
        out = lm.generate(**enc, do_sample=True, temperature=1.6, top_k=0, max_new_tokens=48,
                          pad_token_id=tokenizer.pad_token_id)
    fallbacks = 0
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        plain = [t for t in row if t not in tokenizer.all_special_ids]
        fallbacks += tokenizer(tokenizer.decode(plain), add_special_tokens=False)["input_ids"] != plain
        assert decode_with_offsets(tokenizer, row) == old_decode_with_offsets(tokenizer, row)
    assert fallbacks >= 1


def test_prefix_lengths_decode_windows_not_prefixes(tokenizer, monkeypatch):
    """A 4,000-token row: the tokens decoded in all are a few per token (windows), not n^2/2 (~8 million)."""
    text = " ".join(real_trajectories(6) * 4)
    ids = scrambled_ids(tokenizer, text, 1)[:-1][:4000]
    text = tokenizer.decode(ids)
    decoded = []
    original = tokenizer.decode
    monkeypatch.setattr(tokenizer, "decode", lambda toks, **kw: decoded.append(len(toks)) or original(toks, **kw))
    lengths = _prefix_lengths(tokenizer, ids, text)
    assert len(ids) == 4000 and lengths[-1] == len(text)
    assert sum(decoded) < 20 * len(ids), sum(decoded)


class _StrippingTokenizer:
    """A decode that drops one leading space (as SentencePiece does at a text's start): not additive at anchors."""

    def __init__(self, tokens: dict[int, str]):
        self.tokens = tokens

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.tokens[i] for i in ids).removeprefix(" ")


def test_a_decode_that_is_not_additive_falls_back_to_whole_prefixes():
    tok = _StrippingTokenizer({1: " a", 2: " bb", 3: "c"})
    ids = [3, 1, 2, 1, 3, 3, 2, 1, 2, 2, 1, 3]
    text = tok.decode(ids)
    expected = [len(tok.decode(ids[: i + 1])) for i in range(len(ids))]
    assert _prefix_lengths(tok, ids, text, window=2) == expected
