"""The controlled configuration of the reflection-claims benchmark: a word-level tokenizer, a tiny causal LM, its
warm-start trajectories and the measurements, shared by ``benchmarks/reflection_claims.py`` and its tests.

Only the *model* is small and made here. The task, its rubric and its rule judge are
:mod:`r2_write.benchmark_tasks.keywords` (English prompts: a note on a topic with three required words
under a word limit); the trajectory format and parser are :mod:`r2_write.trajectory`; the
reward, PPO and GRPO are the project's. The policy is:

* a real ``transformers.PreTrainedTokenizerFast`` over a word-level ``tokenizers`` model, in
  which every segment tag (``<think>``, ``</draft>``, ...) is one token and every text is
  written with a space between tokens, so ``decode(encode(text)) == text`` and the rollout's
  character offsets (where the process reward is placed) are exact;
* a from-scratch ``LlamaForCausalLM`` of 2 layers, hidden size 128 (0.53M parameters, 62 tokens), saved as a
  plain Hugging Face directory that :func:`r2_write.rl.trainer.train` and TRL's ``GRPOTrainer``
  load unchanged.

Warm-start trajectories (:func:`sft_example`) mix, on purpose, the four cases the claims are
about: a draft that misses one required word (a reflection helps) or is already complete (a
reflection is redundant), each either followed by a reflection/revision step or not. After an
incomplete draft the reflection names the missing word and the revision adds its sentence (a
*useful* reflection); after a complete draft the reflection says so and the revision repeats
the draft (a *redundant* reflection). The final answer is the last version.

>>> spec = KeywordSpec("en", ("sun", "tree", "water"), 25, "the sea")
>>> ex = sft_example(spec, draft_complete=False, reflect=True, rng=random.Random(0))
>>> measure_completion(ex["completion"], spec)["useful"], measure_completion(ex["completion"], spec)["outcome"]
(True, 10.0)
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

from r2_write.benchmark_tasks.keywords import (
    EN_LIMITS,
    EN_TOPICS,
    EN_WORDS,
    KeywordSpec,
    criteria_json,
    keyword_judge,
    prompt_text,
)
from r2_write.trajectory import THINK_CLOSE, THINK_OPEN, format_error, parse, split_thinking

TAGS = ("<think>", "</think>", "<plan>", "</plan>", "<draft>", "</draft>", "<reflection>", "</reflection>",
        "<revision>", "</revision>")
PAD, EOS, UNK, USER, ASSISTANT = "<pad>", "<eos>", "<unk>", "<user>", "<assistant>"
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}<user> {{ message['content'] }} "
    "{% elif message['role'] == 'assistant' %}<assistant> {{ message['content'] }} <eos> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)

# The controlled task draws from a part of the keyword task's lists: six required words and four topics, so a
# 2-layer model learns to copy the prompt's words in a few minutes of SFT on 2 cores.
WORDS = EN_WORDS[:6]
TOPICS = EN_TOPICS[:4]

# The note's sentences (spaced: one token per word or punctuation mark).
OPENINGS = ("A note about {topic} .",)
KEYWORD_SENTENCES = ("I see the {w} .",)
USEFUL_REFLECTION = 'The draft lacks " {w} " , so I add it .'
REDUNDANT_REFLECTION = "The draft has all the words , so I keep it ."


def spaced(text: str) -> str:
    """``text`` with one space between the tokens of the word-level pre-tokenizer (how the policy writes)."""
    from tokenizers.pre_tokenizers import Whitespace

    return " ".join(tok for tok, _ in Whitespace().pre_tokenize_str(text))


def task_prompt(spec: KeywordSpec) -> str:
    """The keyword task's user prompt (:func:`r2_write.benchmark_tasks.keywords.prompt_text`), spaced."""
    return spaced(prompt_text(spec))


def make_specs(n: int, seed: int) -> list[KeywordSpec]:
    """``n`` distinct English task specs (topic, three ordered words of :data:`WORDS`, limit) from a seeded stream.

    There are 4 x 120 x 3 = 1440 specs; ``n`` may not exceed that.
    """
    if n > len(TOPICS) * 120 * len(EN_LIMITS):
        raise ValueError(f"only {len(TOPICS) * 120 * len(EN_LIMITS)} distinct specs, {n} asked")
    rng, out, seen = random.Random(seed), [], set()
    while len(out) < n:
        spec = KeywordSpec("en", tuple(rng.sample(WORDS, 3)), rng.choice(EN_LIMITS), rng.choice(TOPICS))
        if spec not in seen:
            seen.add(spec)
            out.append(spec)
    return out


def task_rows(specs: Sequence[KeywordSpec]) -> list[dict]:
    """Rows with ``prompt`` (spaced) and ``criteria`` (the keyword rubric, the judge reads the spec from it)."""
    return [{"prompt": task_prompt(s), "criteria": criteria_json(s), "spec": s} for s in specs]


# ----------------------------------------------------------------------------- warm-start trajectories


def note(spec: KeywordSpec, words: Sequence[str], rng: random.Random) -> str:
    """An opening line, then one sentence per word of ``words`` (in the prompt's order)."""
    parts = [rng.choice(OPENINGS).format(topic=spec.topic)]
    parts += [rng.choice(KEYWORD_SENTENCES).format(w=w) for w in words]
    return " ".join(parts)


def render_trajectory(draft: str, steps: Sequence[tuple[str, str]]) -> str:
    """``<think> <draft> d </draft> [<reflection> r </reflection> <revision> v </revision>]* </think> answer``.

    The answer is the last version; the text is one space between tokens (the format's own
    parser and checker accept it: whitespace between segments is allowed).
    """
    parts = [THINK_OPEN, "<draft>", draft, "</draft>"]
    for reflection, revision in steps:
        parts += ["<reflection>", reflection, "</reflection>", "<revision>", revision, "</revision>"]
    answer = steps[-1][1] if steps else draft
    return " ".join([*parts, THINK_CLOSE, answer])


def sft_example(spec: KeywordSpec, draft_complete: bool, reflect: bool, rng: random.Random) -> dict:
    """One warm-start trajectory of a case: complete or incomplete draft, with or without a reflection step.

    Returns:
        ``{"prompt", "completion", "criteria", "case"}``, ``case`` one of ``incomplete+useful``,
        ``incomplete+stop``, ``complete+redundant``, ``complete+stop``.
    """
    words = list(spec.words)
    if draft_complete:
        draft = note(spec, words, rng)
        steps = [(REDUNDANT_REFLECTION, draft)] if reflect else []
        case = "complete+redundant" if reflect else "complete+stop"
    else:
        missing = rng.choice(words)
        draft = note(spec, [w for w in words if w != missing], rng)
        # the revision keeps the draft's sentences and inserts the missing word's in the prompt's order
        sentences = [s + " ." for s in draft[:-2].split(" . ")]
        at = 1 + words.index(missing)
        revision = " ".join(sentences[:at] + [rng.choice(KEYWORD_SENTENCES).format(w=missing)] + sentences[at:])
        steps = [(USEFUL_REFLECTION.format(w=missing), revision)] if reflect else []
        case = "incomplete+useful" if reflect else "incomplete+stop"
    return {"prompt": task_prompt(spec), "completion": render_trajectory(draft, steps),
            "criteria": criteria_json(spec), "case": case}


def sft_examples(specs: Sequence[KeywordSpec], seed: int, complete_share: float = 0.5,
                 reflect_share: float = 0.5) -> list[dict]:
    """Warm-start trajectories: a ``complete_share`` of complete drafts, each case reflecting with ``reflect_share``."""
    rng = random.Random(seed)
    return [sft_example(s, rng.random() < complete_share, rng.random() < reflect_share, rng) for s in specs]


# ----------------------------------------------------------------------------- tokenizer and model


def corpus(seed: int = 0, n: int = 400) -> list[str]:
    """Texts covering the vocabulary: every topic, word, limit and template, in prompts and trajectories."""
    texts = [task_prompt(KeywordSpec("en", (w, w, w), lim, t)) for t in TOPICS for w in WORDS for lim in EN_LIMITS]
    rng = random.Random(seed)
    for spec in make_specs(n, seed):
        for complete in (True, False):
            texts.append(sft_example(spec, complete, True, rng)["completion"])
    return texts


def build_tokenizer(texts: Sequence[str] | None = None):
    """A ``PreTrainedTokenizerFast`` over a word-level model of ``texts`` (default :func:`corpus`).

    Special tokens: ``<pad>`` ``<eos>`` ``<unk>`` ``<user>`` ``<assistant>``; each segment tag is
    one (non-special) added token, so it survives ``decode(skip_special_tokens=True)``.
    """
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    pre = Whitespace()
    words = sorted({tok for text in (texts or corpus()) for tok, _ in pre.pre_tokenize_str(text)} - set(TAGS)
                   - {"<", ">", "</"})
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, USER, ASSISTANT, *TAGS, *words])}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in (PAD, EOS, UNK, USER, ASSISTANT)])
    tok.add_tokens([AddedToken(t, normalized=False, single_word=False) for t in TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False,
                                   model_max_length=512)


def build_model(tokenizer, seed: int, hidden: int = 128, layers: int = 2, heads: int = 4):
    """A from-scratch ``LlamaForCausalLM`` for ``tokenizer`` (tied embeddings, 256 positions)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=256, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config)


def sft(model, tokenizer, examples: Sequence[dict], seed: int, epochs: int = 6, batch: int = 32,
        lr: float = 3e-3) -> list[float]:
    """Warm start: next-token cross-entropy on the completion tokens (and EOS), prompts chat-templated as in PPO.

    Returns:
        The mean loss of each epoch.
    """
    import torch

    from r2_write.prompts.policy import policy_messages

    rows = []
    for ex in examples:
        prompt = tokenizer.apply_chat_template(policy_messages(ex["prompt"]), tokenize=False, add_generation_prompt=True)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(ex["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((p_ids + c_ids, len(p_ids)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    total = epochs * math.ceil(len(rows) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / total))
    gen, losses = random.Random(seed), []
    model.train()
    for _ in range(epochs):
        order = gen.sample(range(len(rows)), len(rows))
        epoch_loss = []
        for s in range(0, len(order), batch):
            chunk = [rows[i] for i in order[s : s + batch]]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r, _ in chunk])
            att = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in chunk])
            labels = ids.clone()
            for i, (r, n_prompt) in enumerate(chunk):
                labels[i, :n_prompt] = -100
                labels[i, len(r):] = -100
            loss = model(input_ids=ids, attention_mask=att, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            epoch_loss.append(loss.item())
        losses.append(sum(epoch_loss) / len(epoch_loss))
    model.eval()
    return losses


def save(model, tokenizer, path: str | Path) -> str:
    """Save as a plain Hugging Face directory (what ``rl.trainer.train`` and ``GRPOTrainer`` load)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# ----------------------------------------------------------------------------- measurements


def _score(text: str, spec: KeywordSpec) -> float:
    criteria = criteria_json(spec)
    return keyword_judge([""], [text], [criteria])[0]


def measure_completion(text: str, spec: KeywordSpec, truncated: bool = False) -> dict:
    """The benchmark's per-response numbers, from the project's parser and the rule judge alone.

    Independent of the reward's rules (the thing under test): a step is *useful* when its
    revision scores above every earlier version, *redundant* otherwise. A draft is *incomplete*
    when it misses a required word.

    Returns:
        ``malformed`` (format violation or truncated), ``outcome`` (final answer's 1-10 score, 1 if
        malformed), ``reflections``, ``steps``, ``redundant`` (steps not beating the best version
        so far), ``draft_incomplete`` (None if malformed), ``useful`` (the draft is incomplete and
        the first step improves it; None unless the draft is incomplete).
    """
    from r2_write.benchmark_tasks.keywords import has_word

    bad = truncated or format_error(text) is not None
    out = {"malformed": bad, "outcome": 1.0, "reflections": text.count("<reflection>"), "steps": 0, "redundant": 0,
           "draft_incomplete": None, "useful": None}
    if bad:
        return out
    traj = parse(text, strict=False)
    versions = [s.text for s in traj.segments if s.kind in ("draft", "revision")]
    scores = [_score(v, spec) for v in versions]
    best, redundant = scores[0], 0
    for s in scores[1:]:
        if s > best:
            best = s
        else:
            redundant += 1
    incomplete = not all(has_word(versions[0], w, spec.language) for w in spec.words)
    out.update(outcome=_score(split_thinking(text)[1], spec), steps=len(scores) - 1, redundant=redundant,
               draft_incomplete=incomplete,
               useful=(len(scores) > 1 and scores[1] > scores[0]) if incomplete else None)
    return out


def aggregate(measures: Sequence[dict], tokens: Sequence[int]) -> dict:
    """The table's numbers of one evaluation (``nan`` where a denominator is 0).

    ``useful_rate``: share of incomplete drafts followed by a useful reflection;
    ``redundant_share``: redundant steps / steps; ``redundant_per_response``: redundant steps / responses.
    """
    n = len(measures)
    steps = sum(m["steps"] for m in measures)
    incomplete = [m for m in measures if m["draft_incomplete"]]
    complete = [m for m in measures if m["draft_incomplete"] is False]
    nan = float("nan")
    return {
        "n": n,
        "outcome": sum(m["outcome"] for m in measures) / n,
        "malformed": sum(m["malformed"] for m in measures) / n,
        "tokens": sum(tokens) / n,
        "reflections": sum(m["reflections"] for m in measures) / n,
        "redundant_per_response": sum(m["redundant"] for m in measures) / n,
        "redundant_share": sum(m["redundant"] for m in measures) / steps if steps else nan,
        "useful_rate": sum(bool(m["useful"]) for m in incomplete) / len(incomplete) if incomplete else nan,
        "incomplete_share": len(incomplete) / n,
        # does the policy reflect *when* it helps? reflection rate after an incomplete / a complete draft
        "reflect_after_incomplete": sum(m["steps"] > 0 for m in incomplete) / len(incomplete) if incomplete else nan,
        "reflect_after_complete": (sum(m["steps"] > 0 for m in complete) / len(complete)) if complete else nan,
    }


def generate(model_dir: str, rows: Sequence[dict], samples: int, seed: int, max_new_tokens: int,
             temperature: float = 1.0) -> tuple[list[str], list[bool], list[int]]:
    """``samples`` sampled completions per row (fixed seed): texts, truncated flags and response token counts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r2_write.rl.rollout import encode_prompts

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = [r["prompt"] for r in rows for _ in range(samples)]
    torch.manual_seed(seed)
    eos, texts, truncated, counts = tokenizer.eos_token_id, [], [], []
    with torch.no_grad():
        for s in range(0, len(prompts), 128):
            ids, mask = encode_prompts(tokenizer, prompts[s : s + 128], 256)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=True,
                                 temperature=temperature, top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=eos)
            for row in out[:, ids.shape[1]:].tolist():
                ended = eos in row
                body = row[: row.index(eos)] if ended else row
                texts.append(tokenizer.decode(body, skip_special_tokens=True))
                truncated.append(not ended)
                counts.append(len(body) + int(ended))
    return texts, truncated, counts


def evaluate(model_dir: str, rows: Sequence[dict], samples: int, seed: int, max_new_tokens: int) -> dict:
    """Held-out evaluation: sample, measure each response (:func:`measure_completion`), aggregate."""
    texts, truncated, counts = generate(model_dir, rows, samples, seed, max_new_tokens)
    specs = [r["spec"] for r in rows for _ in range(samples)]
    measures = [measure_completion(t, s, tr) for t, s, tr in zip(texts, specs, truncated)]
    return {**aggregate(measures, counts), "samples": texts[:3]}


def dump_json(obj, path: Path) -> None:
    """Write ``obj`` as JSON atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)
