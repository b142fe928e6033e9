"""A verifiable writing task: a short note on a topic that uses three given words, under a length limit.

Small enough for a 135M model on 2 CPU cores, and judged by code, so a learning curve on it
measures the RL stack (rollouts, rewards, updates) and not the noise of an LLM judge.

* :func:`make_prompts` builds seeded prompts in English (limit in words) and Chinese (limit in
  characters), each with a WritingBench-format rubric of five criteria (``criteria``, the
  project's JSON table format): one per required word, one for the length, one against
  repeated sentences.
* :func:`keyword_judge` has the judge interface of the reward
  (``judge_fn(prompts, texts, rubrics) -> list[float]``): the mean of the five criterion scores,
  each checked by code. The task spec is read back from the rubric it is given (criterion
  names), never from a global, so the reward's per-prompt rubric is all it needs.
* :func:`make_sft_examples` renders warm-start trajectories in the project's format
  (:mod:`r2_write.trajectory`): a plan, a draft that misses one or two words or is too long,
  a reflection naming the fault, a revision that fixes it, the revision as the final answer;
  a share of them with one redundant extra reflection/revision that changes nothing.

>>> row = make_prompts(1, seed=0, languages=("en",))[0]
>>> perfect = good_text(spec_from_rubric(row["criteria"]), random.Random(0))
>>> keyword_judge([row["prompt"]], [perfect], [row["criteria"]])
[10.0]
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from r2_write.rubrics.schema import Criterion
from r2_write.trajectory import Segment, Trajectory, render, split_thinking

# ----------------------------------------------------------------------------- word lists
# Short, common words; no keyword occurs in a topic, a template or a filler sentence
# (checked by tests/benchmark_tasks/test_keywords.py), so a text has a word only where it was put.

EN_TOPICS = (
    "the sea", "a rainy day", "my garden", "a school trip", "breakfast", "the park",
    "winter", "a birthday", "my dog", "the library", "a train ride", "summer",
)
EN_WORDS = (
    "sun", "tree", "water", "book", "friend", "music", "bread", "river", "window", "bird",
    "apple", "road", "cat", "flower", "boat", "house", "star", "tea", "cup", "hat",
)
EN_LIMITS = (25, 30, 40)  # words

ZH_TOPICS = ("春天", "大海", "学校", "早餐", "公园", "下雨天", "我的家", "周末", "冬天", "生日")
ZH_WORDS = (
    "太阳", "朋友", "音乐", "小猫", "老师", "苹果", "月亮", "小鸟", "雨伞", "窗户", "河流", "面包",
    "大树", "灯光", "茶杯", "公路",
)
ZH_LIMITS = (20, 25, 30)  # characters

LANGUAGES = ("en", "zh")
UNITS = {"en": "words", "zh": "characters"}

_TEMPLATES = {
    "en": {
        "prompt": 'Write a short note about {topic} that mentions the words "{w1}", "{w2}" and "{w3}", '
        "in under {limit} words.",
        "opening": ("A note about {topic}.", "This is about {topic}.", "Here is {topic}."),
        "keyword": ("I see the {w} here.", "I like the {w} a lot.", "The {w} makes me smile.",
                    "The {w} is part of it."),
        "filler": ("I want to say a lot more about it.", "There is so much to tell you today.",
                   "Every small part of it feels nice to me.", "I could talk about it for a very long time.",
                   "It stays in my mind all week long.", "Many people feel the same way about it."),
        "plan": "Topic: {topic}. Words: {w1}, {w2}, {w3}. Under {limit} words. "
        "One opening line, then one sentence per word.",
        "missing1": 'The draft lacks the word "{a}", which the prompt requires, so I add a sentence with it.',
        "missing2": 'The draft lacks the words "{a}" and "{b}", which the prompt requires, so I add a sentence '
        "for each.",
        "too_long": "The draft has {count} words, but the prompt asks for under {limit}, so I cut the extra "
        "sentences.",
        "redundant": 'The revision has "{w1}", "{w2}" and "{w3}" in {count} words, so I keep it as it is.',
        "join": " ",
    },
    "zh": {
        "prompt": "写一段关于{topic}的短文，要用到“{w1}”、“{w2}”和“{w3}”，少于{limit}个字。",
        "opening": ("说说{topic}。", "写写{topic}。", "关于{topic}。"),
        "keyword": ("我爱{w}。", "看见{w}。", "{w}很好。", "有{w}。"),
        "filler": ("我还想说很多。", "一切都很美好。", "我很难忘。", "大家都这样想。", "这些留在心里。", "我会一直记得。"),
        "plan": "主题{topic}，用{w1}、{w2}、{w3}，少于{limit}字。",
        "missing1": "草稿缺少“{a}”，题目要求它，加一句。",
        "missing2": "草稿缺少“{a}”和“{b}”，题目要求它们，各加一句。",
        "too_long": "草稿有{count}字，要求少于{limit}字，删去多余的句子。",
        "redundant": "修改稿已用“{w1}”、“{w2}”、“{w3}”，共{count}字，保持不变。",
        "join": "",
    },
}


# ----------------------------------------------------------------------------- the task spec


@dataclass(frozen=True)
class KeywordSpec:
    """What a text must do: use ``words``, have ``min_length <= length < limit`` (``unit``), no repeats."""

    language: str
    words: tuple[str, ...]
    limit: int
    topic: str = ""

    @property
    def unit(self) -> str:
        return UNITS[self.language]

    @property
    def min_length(self) -> int:
        """Shortest length that still counts as a note: a quarter of the limit."""
        return max(1, self.limit // 4)


def prompt_text(spec: KeywordSpec) -> str:
    """The user prompt of a spec."""
    w1, w2, w3 = spec.words
    return _TEMPLATES[spec.language]["prompt"].format(topic=spec.topic, w1=w1, w2=w2, w3=w3, limit=spec.limit)


def _keyword_name(language: str, word: str) -> str:
    return f'Uses the word "{word}"' if language == "en" else f"使用词语“{word}”"


def _length_name(language: str, limit: int) -> str:
    return f"Under {limit} words" if language == "en" else f"少于{limit}个字"


_REPEAT_NAME = {"en": "No repeated sentences", "zh": "没有重复的句子"}
_KEYWORD_NAME_RE = re.compile(r'^(?:Uses the word "(?P<en>[^"]+)"|使用词语“(?P<zh>[^”]+)”)$')
_LENGTH_NAME_RE = re.compile(r"^(?:Under (?P<en>\d+) words|少于(?P<zh>\d+)个字)$")


def rubric_criteria(spec: KeywordSpec) -> list[Criterion]:
    """The five WritingBench-format criteria of a spec (three words, length, no repetition).

    The criterion names carry the spec (:func:`spec_from_rubric` reads it back).
    """
    lang, crits = spec.language, []
    for w in spec.words:
        if lang == "en":
            desc = f'The note must contain the required word "{w}" (a plural form counts). Checked by code: 10 if present, 1 if absent.'
            bands = {"1-2": f'"{w}" does not appear.', "3-4": "Not used (the check is present or absent).",
                     "5-6": "Not used (the check is present or absent).", "7-8": "Not used (the check is present or absent).",
                     "9-10": f'"{w}" appears in the note.'}
        else:
            desc = f"短文必须包含词语“{w}”。由代码检查：出现得10分，未出现得1分。"
            bands = {"1-2": f"没有出现“{w}”。", "3-4": "不使用（只检查出现与否）。", "5-6": "不使用（只检查出现与否）。",
                     "7-8": "不使用（只检查出现与否）。", "9-10": f"短文中出现了“{w}”。"}
        crits.append(Criterion(name=_keyword_name(lang, w), description=desc, bands=bands))
    n, lo = spec.limit, spec.min_length
    if lang == "en":
        desc = (f"The note must have fewer than {n} words and at least {lo}. Over the limit the score falls linearly, "
                f"reaching 1 at {n // 2} words too many; under {lo} words it falls linearly to 1 for an empty note.")
        bands = {"1-2": f"Empty, or {n // 2} or more words over the limit.", "3-4": "Far over the limit or far too short.",
                 "5-6": "Clearly over the limit or too short.", "7-8": "Slightly over the limit or slightly too short.",
                 "9-10": f"Between {lo} and {n - 1} words."}
    else:
        desc = (f"短文必须少于{n}个字，至少{lo}个字。超出越多分数越低，超出{n // 2}个字时为1分；少于{lo}个字时按比例降低。")
        bands = {"1-2": f"空白，或超出{n // 2}个字以上。", "3-4": "远超字数或过短。", "5-6": "明显超出字数或偏短。",
                 "7-8": "略微超出字数或略短。", "9-10": f"在{lo}到{n - 1}个字之间。"}
    crits.append(Criterion(name=_length_name(lang, n), description=desc, bands=bands))
    if lang == "en":
        desc = "No sentence may appear twice. Score: 1 + 9 x (distinct sentences / sentences)."
        bands = {"1-2": "Almost every sentence is a repeat.", "3-4": "Most sentences are repeats.",
                 "5-6": "About half the sentences are repeats.", "7-8": "A few repeated sentences.",
                 "9-10": "Every sentence is distinct."}
    else:
        desc = "同一个句子不能出现两次。得分：1 + 9 x（不同句子数 / 句子数）。"
        bands = {"1-2": "几乎每句都是重复。", "3-4": "多数句子重复。", "5-6": "约一半句子重复。", "7-8": "有少量重复句子。",
                 "9-10": "每个句子都不同。"}
    crits.append(Criterion(name=_REPEAT_NAME[lang], description=desc, bands=bands))
    return crits


def criteria_json(spec: KeywordSpec) -> str:
    """The rubric as the project's ``criteria`` cell: a JSON list of WritingBench criterion rows."""
    return json.dumps([c.to_row() for c in rubric_criteria(spec)], ensure_ascii=False)


def spec_from_rubric(rubric: Any) -> KeywordSpec:
    """Read the spec back from a rubric: a ``criteria`` JSON string, or a list of criterion dicts / Criterion.

    Raises:
        ValueError: when the rubric is not one of this task's (no keyword or length criterion).
    """
    if isinstance(rubric, str):
        rubric = json.loads(rubric)
    names = [c.name if isinstance(c, Criterion) else str(c.get("name", "")) for c in (rubric or [])]
    words, limit, language = [], None, None
    for name in names:
        if m := _KEYWORD_NAME_RE.match(name.strip()):
            lang = "en" if m.group("en") else "zh"
            words.append(m.group(lang))
            language = language or lang
        elif m := _LENGTH_NAME_RE.match(name.strip()):
            lang = "en" if m.group("en") else "zh"
            limit, language = int(m.group(lang)), lang
    if not words or limit is None:
        raise ValueError(f"not a keyword-task rubric (criteria: {names})")
    return KeywordSpec(language=language, words=tuple(words), limit=limit)


# ----------------------------------------------------------------------------- checks


_EN_WORD_RE = re.compile(r"[A-Za-z0-9']+")
_CJK_RE = re.compile(r"[\u3400-\u9fff]")
_SENTENCE_SPLIT_RE = re.compile(r"[.!?。！？;；\n]+")


def text_length(text: str, language: str) -> int:
    """Words (en) or characters (zh: CJK characters plus Latin words; punctuation not counted)."""
    if language == "en":
        return len(_EN_WORD_RE.findall(text))
    return len(_CJK_RE.findall(text)) + len(_EN_WORD_RE.findall(text))


def has_word(text: str, word: str, language: str) -> bool:
    """Whether ``word`` occurs: a whole word, case-insensitive, plural -s/-es allowed (en); a substring (zh)."""
    if language == "zh":
        return word in text
    return re.search(rf"(?<![A-Za-z]){re.escape(word)}(?:s|es)?(?![A-Za-z])", text, re.I) is not None


def sentences(text: str) -> list[str]:
    """Normalised non-empty sentences (lower case, punctuation and spaces removed)."""
    out = []
    for s in _SENTENCE_SPLIT_RE.split(text):
        norm = re.sub(r"[\W_]+", "", s.lower())
        if norm:
            out.append(norm)
    return out


def length_score(length: int, spec: KeywordSpec) -> float:
    """10 inside ``[min_length, limit)``; linear down to 1 at ``limit // 2`` over, or at length 0."""
    if length <= 0:
        return 1.0
    if length < spec.min_length:
        return 1.0 + 9.0 * length / spec.min_length
    over = length - spec.limit + 1
    if over <= 0:
        return 10.0
    return max(1.0, 10.0 - 9.0 * over / max(1, spec.limit // 2))


def repetition_score(text: str) -> float:
    """``1 + 9 x distinct / total`` sentences; 1 for a text without any sentence."""
    sents = sentences(text)
    if not sents:
        return 1.0
    return 1.0 + 9.0 * len(set(sents)) / len(sents)


def criterion_scores(text: str, spec: KeywordSpec) -> dict[str, float]:
    """Per-criterion 1-10 scores of ``text`` (criterion name -> score), in rubric order.

    A text holding ``</think>`` is judged on what follows it (the final answer).
    """
    if "</think>" in text:
        text = split_thinking(text)[1]
    scores = {_keyword_name(spec.language, w): 10.0 if has_word(text, w, spec.language) else 1.0 for w in spec.words}
    scores[_length_name(spec.language, spec.limit)] = length_score(text_length(text, spec.language), spec)
    scores[_REPEAT_NAME[spec.language]] = repetition_score(text)
    return scores


def judge_details(prompts: Sequence[str], texts: Sequence[str], rubrics: Sequence[Any]) -> list[dict]:
    """Per text: ``{"scores": {criterion: 1-10}, "mean": float, "length": int}`` (for inspection)."""
    if not (len(prompts) == len(texts) == len(rubrics)):
        raise ValueError(f"{len(prompts)} prompts, {len(texts)} texts and {len(rubrics)} rubrics")
    out = []
    for text, rubric in zip(texts, rubrics):
        spec = spec_from_rubric(rubric)
        scores = criterion_scores(text, spec)
        answer = split_thinking(text)[1] if "</think>" in text else text
        out.append({"scores": scores, "mean": sum(scores.values()) / len(scores),
                    "length": text_length(answer, spec.language)})
    return out


def keyword_judge(prompts: Sequence[str], texts: Sequence[str], rubrics: Sequence[Any]) -> list[float]:
    """The rule-based judge, with the reward's judge interface: one 1-10 score per text.

    The score is the mean of the rubric's five criterion scores (see :func:`criterion_scores`);
    the spec comes from each text's rubric (:func:`spec_from_rubric`).
    """
    return [d["mean"] for d in judge_details(prompts, texts, rubrics)]


# ----------------------------------------------------------------------------- prompts


def make_prompts(n: int, seed: int, languages: Sequence[str] = LANGUAGES) -> list[dict]:
    """``n`` distinct task prompts, languages in turn, from seeded word/topic lists.

    Returns:
        Rows with ``id``, ``prompt``, ``language``, ``topic``, ``words`` (list of 3), ``limit``,
        ``unit`` (words | characters) and ``criteria`` (the rubric: WritingBench JSON, 5 criteria).
    """
    bad = [lang for lang in languages if lang not in LANGUAGES]
    if bad or not languages:
        raise ValueError(f"languages must be a non-empty subset of {LANGUAGES}, got {tuple(languages)}")
    rng, rows, seen = random.Random(seed), [], set()
    lists = {"en": (EN_TOPICS, EN_WORDS, EN_LIMITS), "zh": (ZH_TOPICS, ZH_WORDS, ZH_LIMITS)}
    while len(rows) < n:
        lang = languages[len(rows) % len(languages)]
        topics, words, limits = lists[lang]
        spec = KeywordSpec(lang, tuple(rng.sample(words, 3)), rng.choice(limits), rng.choice(topics))
        prompt = prompt_text(spec)
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append({"id": f"kw-{lang}-{len(rows):04d}", "prompt": prompt, "language": lang, "topic": spec.topic,
                     "words": list(spec.words), "limit": spec.limit, "unit": spec.unit, "criteria": criteria_json(spec)})
    return rows


def spec_of_row(row: dict) -> KeywordSpec:
    """The spec of a :func:`make_prompts` row."""
    return KeywordSpec(row["language"], tuple(row["words"]), int(row["limit"]), row["topic"])


# ----------------------------------------------------------------------------- warm-start trajectories


def _note_parts(spec: KeywordSpec, rng: random.Random) -> list[str]:
    """An opening line, then one sentence per required word (distinct templates)."""
    t = _TEMPLATES[spec.language]
    templates = rng.sample(t["keyword"], len(t["keyword"]))
    parts = [rng.choice(t["opening"]).format(topic=spec.topic)]
    return parts + [templates[i % len(templates)].format(w=w) for i, w in enumerate(spec.words)]


def good_text(spec: KeywordSpec, rng: random.Random) -> str:
    """A note that meets every criterion (all words, within the length band, no repeats)."""
    return _TEMPLATES[spec.language]["join"].join(_note_parts(spec, rng))


def make_sft_examples(rows: Sequence[dict], seed: int, redundant_share: float = 0.2,
                      reflect_share: float = 1.0) -> list[dict]:
    """Warm-start SFT trajectories for task rows, rendered with :func:`r2_write.trajectory.render`.

    Each: plan -> a flawed draft (misses one word, misses two words, or is too long: 40/30/30%)
    -> a reflection naming the fault and why it matters -> a revision that fixes it; the final
    answer is the revision. A ``redundant_share`` of them get one more reflection/revision step
    that changes nothing (what the process reward punishes).

    Only a ``reflect_share`` of them reflect at all: the others stop after the flawed draft and
    give it as the answer (``reflected`` False), a teacher that often skips the check. A policy
    SFT'd on them reflects only some of the time, so the outcome has room to grow by learning
    *when* to reflect: the headroom the learning-signal benchmark and test measure RL on.

    Returns:
        Rows with ``id``, ``prompt``, ``completion`` (the rendered trajectory), ``language``,
        ``fault`` (missing1 | missing2 | too_long), ``reflected`` (bool), ``redundant`` (bool),
        ``answer``, ``criteria``.
    """
    if not 0 <= reflect_share <= 1 or not 0 <= redundant_share <= 1:
        raise ValueError(f"reflect_share and redundant_share must be in [0, 1], got {reflect_share}, {redundant_share}")
    rng, out = random.Random(seed), []
    for row in rows:
        spec = spec_of_row(row)
        t = _TEMPLATES[spec.language]
        fmt = {"topic": spec.topic, "w1": spec.words[0], "w2": spec.words[1], "w3": spec.words[2], "limit": spec.limit}
        parts = _note_parts(spec, rng)
        answer = t["join"].join(parts)
        fault = rng.choices(("missing1", "missing2", "too_long"), weights=(4, 3, 3))[0]
        if fault == "too_long":  # the answer plus filler sentences until it reaches the limit
            fillers, draft = rng.sample(t["filler"], len(t["filler"])), answer
            for k in range(len(fillers)):
                draft = t["join"].join([*parts, *fillers[: k + 1]])
                if text_length(draft, spec.language) >= spec.limit:
                    break
            if text_length(draft, spec.language) < spec.limit:
                fault = "missing1"  # the fillers cannot push this one over: fall back
        if fault == "too_long":
            reflection = t["too_long"].format(count=text_length(draft, spec.language), limit=spec.limit)
        else:  # the answer without the sentences of one or two words
            chosen = set(rng.sample(spec.words, 1 if fault == "missing1" else 2))
            missing = [w for w in spec.words if w in chosen]
            draft = t["join"].join([parts[0]] + [p for p, w in zip(parts[1:], spec.words) if w not in missing])
            reflection = t[fault].format(a=missing[0], b=missing[-1])
        segments = [Segment("plan", t["plan"].format(**fmt)), Segment("draft", draft),
                    Segment("reflection", reflection), Segment("revision", answer)]
        redundant = rng.random() < redundant_share
        reflected = reflect_share >= 1 or rng.random() < reflect_share  # the stream of share 1 is unchanged
        if not reflected:  # the draft is the answer
            segments, answer, redundant = segments[:2], draft, False
        elif redundant:
            segments += [Segment("reflection", t["redundant"].format(count=text_length(answer, spec.language), **fmt)),
                         Segment("revision", answer)]
        out.append({"id": row["id"], "prompt": row["prompt"], "completion": render(Trajectory(segments, answer)),
                    "language": spec.language, "fault": fault, "reflected": reflected, "redundant": redundant,
                    "answer": answer,
                    "criteria": row["criteria"]})
    return out
