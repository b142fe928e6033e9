"""The keyword task: prompts and rubrics, the rule-based judge, warm-start trajectories."""

import json
import random
import re

import pytest

from r2_write.rubrics.schema import BANDS, Criterion
from r2_write.benchmark_tasks import keywords as kw
from r2_write.benchmark_tasks.keywords import (
    KeywordSpec,
    criterion_scores,
    good_text,
    judge_details,
    keyword_judge,
    make_prompts,
    make_sft_examples,
    spec_from_rubric,
    spec_of_row,
)
from r2_write.trajectory import parse

EN = KeywordSpec("en", ("river", "bread", "cat"), 30, "the park")
ZH = KeywordSpec("zh", ("太阳", "朋友", "音乐"), 25, "春天")


def _judge(spec, text):
    return keyword_judge(["p"], [text], [kw.criteria_json(spec)])[0]


# ----------------------------------------------------------------------------- prompts and rubrics


@pytest.mark.parametrize("languages", [("en", "zh"), ("en",), ("zh",)])
def test_make_prompts_rows_languages_and_determinism(languages):
    rows = make_prompts(40, seed=3, languages=languages)
    assert rows == make_prompts(40, seed=3, languages=languages)
    assert rows != make_prompts(40, seed=4, languages=languages)
    assert len({r["prompt"] for r in rows}) == len({r["id"] for r in rows}) == 40
    assert [r["language"] for r in rows[: len(languages)]] == list(languages)
    for r in rows:
        assert set(r) == {"id", "prompt", "language", "topic", "words", "limit", "unit", "criteria"}
        assert len(set(r["words"])) == 3 and all(w in r["prompt"] for w in r["words"])
        assert str(r["limit"]) in r["prompt"] and r["topic"] in r["prompt"]
        assert r["unit"] == ("words" if r["language"] == "en" else "characters")


def test_zh_prompts_are_chinese_with_a_character_limit():
    row = make_prompts(1, seed=0, languages=("zh",))[0]
    assert row["words"][0] in kw.ZH_WORDS and row["topic"] in kw.ZH_TOPICS
    assert re.search(r"少于\d+个字", row["prompt"])


def test_rubric_is_five_writingbench_criteria_and_carries_the_spec():
    for row in make_prompts(10, seed=1):
        crits = json.loads(row["criteria"])
        assert len(crits) == 5
        for c in crits:
            assert {"name", "criteria_description", *BANDS} <= set(c)
            Criterion.model_validate(c)  # the project's rubric type accepts it
        spec = spec_from_rubric(row["criteria"])
        assert (spec.language, list(spec.words), spec.limit) == (row["language"], row["words"], row["limit"])
        # as parsed criteria too (what criteria_of returns), and as plain dicts
        assert spec_from_rubric([Criterion.model_validate(c) for c in crits]) == spec
        assert spec_from_rubric(crits) == spec


def test_spec_from_a_foreign_rubric_is_an_error():
    rubric = [{"name": "Clarity", "criteria_description": "Clear.", **{b: "x" for b in BANDS}}]
    with pytest.raises(ValueError, match="not a keyword-task rubric"):
        spec_from_rubric(rubric)


def test_word_lists_do_not_leak_into_templates_or_topics():
    # a text has a required word only where it was put on purpose
    for lang, words, topics in (("en", kw.EN_WORDS, kw.EN_TOPICS), ("zh", kw.ZH_WORDS, kw.ZH_TOPICS)):
        t = kw._TEMPLATES[lang]
        fixed = [*topics, *t["filler"], *(s.format(topic="", w="") for s in t["opening"] + t["keyword"])]
        for w in words:
            assert not any(kw.has_word(s, w, lang) for s in fixed), (lang, w)


# ----------------------------------------------------------------------------- judge


@pytest.mark.parametrize("spec", [EN, ZH], ids=["en", "zh"])
def test_perfect_text_scores_10(spec):
    text = good_text(spec, random.Random(0))
    assert _judge(spec, text) == 10.0
    assert set(criterion_scores(text, spec).values()) == {10.0}


def test_judge_scores_broken_en_texts_low():
    assert _judge(EN, "") == 1.0
    assert _judge(EN, "A note about the park. The river is nice.") == pytest.approx((10 + 1 + 1 + 10 + 10) / 5)
    scores = criterion_scores("I like the bread. " * 6, EN)
    assert scores['Uses the word "bread"'] == 10 and scores['Uses the word "river"'] == 1
    assert scores["No repeated sentences"] == pytest.approx(1 + 9 / 6)
    # all words but far too long: the length criterion bottoms out
    long = "The river, the bread and the cat. " + " ".join(f"word{i}" for i in range(60))
    assert criterion_scores(long, EN)["Under 30 words"] == 1.0
    assert _judge(EN, long) < _judge(EN, good_text(EN, random.Random(0)))


def test_judge_scores_broken_zh_texts_low():
    assert _judge(ZH, "") == 1.0
    assert _judge(ZH, "说说春天。我爱太阳。") == pytest.approx((10 + 1 + 1 + 10 + 10) / 5)
    scores = criterion_scores("我爱太阳。" * 5, ZH)
    assert scores["使用词语“朋友”"] == 1 and scores["没有重复的句子"] == pytest.approx(1 + 9 / 5)
    over = "说说春天。我爱太阳。朋友很好。看见音乐。" + "我还想说很多。" * 1 + "一切都很美好。大家都这样想。"
    assert kw.text_length(over, "zh") >= 25
    assert criterion_scores(over, ZH)["少于25个字"] < 10


def test_length_score_is_graded():
    spec = KeywordSpec("en", ("a", "b", "c"), 20)  # band [5, 20)
    got = [kw.length_score(n, spec) for n in (0, 1, 5, 19, 20, 25, 30, 40)]
    assert got == pytest.approx([1.0, 1 + 9 / 5, 10, 10, 10 - 9 / 10, 10 - 9 * 6 / 10, 1.0, 1.0])


def test_en_word_matching_is_whole_word_case_insensitive_with_plurals():
    assert kw.has_word("Two Cats sat.", "cat", "en") and kw.has_word("the cat.", "cat", "en")
    assert not kw.has_word("a catalogue", "cat", "en") and not kw.has_word("that", "hat", "en")
    assert kw.text_length("I can't see 3 rivers.", "en") == 5
    assert kw.text_length("说说春天，我爱 tea。", "zh") == 7


def test_judge_reads_the_answer_after_think_and_takes_the_spec_per_rubric():
    text = "<think>\n<draft>\nriver bread cat\n</draft>\n</think>\n" + good_text(EN, random.Random(1))
    other = KeywordSpec("en", ("sun", "tree", "boat"), 30, "the park")
    got = keyword_judge(["p", "p"], [text, text], [kw.criteria_json(EN), kw.criteria_json(other)])
    assert got[0] == 10.0 and got[1] < 10.0
    details = judge_details(["p"], [text], [kw.criteria_json(EN)])[0]
    assert details["mean"] == 10.0 and len(details["scores"]) == 5 and details["length"] > 0
    with pytest.raises(ValueError, match="prompts"):
        keyword_judge(["p"], [text, text], [kw.criteria_json(EN)])


# ----------------------------------------------------------------------------- warm-start examples


def test_sft_examples_parse_and_follow_the_recipe():
    rows = make_prompts(200, seed=0)
    examples = make_sft_examples(rows, seed=0)
    assert examples == make_sft_examples(rows, seed=0)
    faults = {e["fault"] for e in examples}
    assert faults == {"missing1", "missing2", "too_long"}
    assert 0.1 < sum(e["redundant"] for e in examples) / len(examples) < 0.3
    for row, e in zip(rows, examples):
        traj = parse(e["completion"], strict=True)
        kinds = [s.kind for s in traj.segments]
        assert kinds[:4] == ["plan", "draft", "reflection", "revision"]
        assert kinds[4:] == (["reflection", "revision"] if e["redundant"] else [])
        spec = spec_of_row(row)
        versions = traj.versions()
        scores = keyword_judge([e["prompt"]] * len(versions), versions, [row["criteria"]] * len(versions))
        assert scores[0] < 10.0 and all(s == 10.0 for s in scores[1:])  # the draft is flawed, revisions fix it
        assert traj.answer == versions[-1] == e["answer"]
        reflection = traj.segments[2].text
        draft_scores = criterion_scores(versions[0], spec)
        if e["fault"] == "too_long":
            assert draft_scores[kw._length_name(spec.language, spec.limit)] < 10
            assert str(spec.limit) in reflection
        else:
            missing = [w for w in spec.words if not kw.has_word(versions[0], w, spec.language)]
            assert len(missing) == (1 if e["fault"] == "missing1" else 2)
            assert all(w in reflection for w in missing)
            assert ("lacks" in reflection and "requires" in reflection) or "缺少" in reflection
        if e["redundant"]:
            assert traj.segments[5].text == traj.segments[3].text  # changes nothing


def test_sft_examples_are_short_enough_for_cpu_rollouts():
    from transformers import AutoTokenizer

    from tests.conftest import EMBEDDED_MODEL

    if not (EMBEDDED_MODEL / "tokenizer.json").exists():
        pytest.skip("embedded model missing: run `make model`")
    tok = AutoTokenizer.from_pretrained(EMBEDDED_MODEL)
    examples = make_sft_examples(make_prompts(100, seed=0), seed=0)
    lengths = [len(tok(e["completion"])["input_ids"]) for e in examples if not e["redundant"]]
    assert max(lengths) <= 300 and sum(lengths) / len(lengths) <= 230


def test_sft_examples_without_reflection_answer_with_the_flawed_draft():
    rows = make_prompts(200, seed=0)
    examples = make_sft_examples(rows, seed=0, reflect_share=0.5)
    skipped = [e for e in examples if not e["reflected"]]
    assert 0.4 < len(skipped) / len(examples) < 0.6
    for row, e in zip(rows, examples):
        traj = parse(e["completion"], strict=True)
        kinds = [s.kind for s in traj.segments]
        if e["reflected"]:
            assert kinds[:4] == ["plan", "draft", "reflection", "revision"]
            assert keyword_judge([e["prompt"]], [traj.answer], [row["criteria"]]) == [10.0]
        else:  # the teacher skipped the check: its answer keeps the draft's flaw
            assert kinds == ["plan", "draft"] and not e["redundant"]
            assert traj.answer == traj.segments[1].text == e["answer"]
            assert keyword_judge([e["prompt"]], [traj.answer], [row["criteria"]])[0] < 10.0
    with pytest.raises(ValueError, match="reflect_share"):
        make_sft_examples(rows, seed=0, reflect_share=1.5)
