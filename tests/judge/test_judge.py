"""RubricJudge with a scripted client: retries, failure counts, never 0, probability mode."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from r2_write.judge.judge import JudgeConfig, JudgeItem, JudgeResult, RubricJudge, band_for, mean_score
from r2_write.llm.base import Generation
from r2_write.prompts.judge import SCORE_PREFIX, SCORE_TOKENS
from r2_write.rubrics.schema import BANDS, Criterion
from tests.fakes import user_text


def _criterion(name: str = "Clarity") -> Criterion:
    return Criterion(name=name, criteria_description=f"Is it {name.lower()}?", **{b: f"{name} band {b}" for b in BANDS})


def _items(n: int) -> list[JudgeItem]:
    return [JudgeItem(f"query {i}", f"response {i}", _criterion()) for i in range(n)]


def test_generate_mode_scores(fake_client):
    judge = RubricJudge(fake_client, JudgeConfig(mode="generate"))
    results = judge.score(_items(3))
    assert [r.score for r in results] == [6.0, 6.0, 6.0]
    assert all(r.reason == "solid but generic" and r.attempts == 1 for r in results)
    assert judge.stats.items == 3 and judge.stats.parse_failures == 0 and judge.stats.failed_items == 0


def test_malformed_answer_is_retried_with_new_sampling(fake_client):
    seen = Counter()

    def respond(conv, sampling):
        key = user_text(conv)
        seen[key] += 1
        return "Great essay!!" if seen[key] == 1 else '{"score": 4, "reason": "vague"}'

    fake_client.backend.respond = respond
    judge = RubricJudge(fake_client, JudgeConfig(mode="generate", max_attempts=3, temperature=0.0, retry_temperature=0.7))
    results = judge.score(_items(2))
    assert [(r.score, r.attempts) for r in results] == [(4.0, 2), (4.0, 2)]
    assert judge.stats.parse_failures == 2 and judge.stats.failed_items == 0
    assert len(fake_client.backend.batches) == 2  # one batch per attempt, only the failed items retried


def test_retry_temperature_used_after_first_attempt(fake_client):
    temps = []

    def respond(conv, sampling):
        temps.append(sampling.temperature)
        return "no score here"

    fake_client.backend.respond = respond
    RubricJudge(fake_client, JudgeConfig(mode="generate", max_attempts=3, retry_temperature=0.9)).score(_items(1))
    assert temps == [0.0, 0.9, 0.9]


def test_never_parsing_gives_none_not_zero(fake_client):
    fake_client.backend.respond = lambda conv, s: '{"score": 0, "reason": "terrible"}'
    judge = RubricJudge(fake_client, JudgeConfig(mode="generate", max_attempts=2))
    results = judge.score(_items(2))
    assert all(r.score is None for r in results)
    assert all(r.attempts == 2 and "not an integer" in r.error for r in results)
    assert judge.stats.parse_failures == 4 and judge.stats.failed_items == 2
    assert len(judge.stats.errors) == 2
    assert mean_score(results) is None
    assert judge.stats.as_metrics("synthesis/judge") == {
        "synthesis/judge/items": 2.0,
        "synthesis/judge/parse_failures": 4.0,
        "synthesis/judge/failed_items": 2.0,
        "synthesis/judge/truncated": 0.0,
    }


def test_failed_calls_are_retried_and_reported(fake_client):
    fake_client.backend.respond = lambda conv, s: Generation(text="", error="HTTP 503")
    judge = RubricJudge(fake_client, JudgeConfig(mode="generate", max_attempts=2))
    (result,) = judge.score(_items(1))
    assert result.score is None and result.error == "call failed: HTTP 503"
    assert judge.stats.parse_failures == 0 and judge.stats.failed_items == 1
    assert fake_client.backend.n_generated == 2


def test_empty_items(fake_client):
    assert RubricJudge(fake_client).score([]) == []
    assert fake_client.backend.batches == []


def test_probability_mode_expected_value(fake_client):
    probs = {"2": 0.25, "8": 0.5, "10": 0.25}
    prefixes = []

    def scripted(conv, candidates, prefix):
        prefixes.append(prefix)
        assert candidates == SCORE_TOKENS
        return {c: probs.get(c, 0.0) for c in candidates}

    fake_client.backend.probs = scripted
    judge = RubricJudge(fake_client, JudgeConfig(mode="probability"))
    (result,) = judge.score(_items(1))
    assert result.score == pytest.approx(0.25 * 2 + 0.5 * 8 + 0.25 * 10)  # 7.0
    assert result.reason == "Clarity band 7-8"
    assert prefixes == [SCORE_PREFIX]
    assert fake_client.backend.batches == []  # no generation in probability mode


def test_probability_mode_normalises_partial_mass(fake_client):
    fake_client.backend.probs = lambda conv, cands, prefix: {c: (0.1 if c in ("3", "5") else 0.0) for c in cands}
    (result,) = RubricJudge(fake_client, JudgeConfig(mode="probability")).score(_items(1))
    assert result.score == pytest.approx(4.0)


@pytest.mark.parametrize("mass", [0.0, float("nan")])
def test_probability_mode_without_mass_is_unscored(fake_client, mass):
    fake_client.backend.probs = lambda conv, cands, prefix: {c: mass for c in cands}
    judge = RubricJudge(fake_client, JudgeConfig(mode="probability"))
    (result,) = judge.score(_items(1))
    assert result.score is None and "no probability mass" in result.error
    assert judge.stats.failed_items == 1


def test_score_responses_groups_by_rubric(fake_client):
    fake_client.backend.respond = lambda conv, s: '{"score": %d, "reason": "r"}' % (3 if "response A" in user_text(conv) else 9)
    judge = RubricJudge(fake_client, JudgeConfig(mode="generate"))
    out = judge.score_responses(["q", "q"], ["response A", "response B"], [[_criterion("X"), _criterion("Y")], [_criterion("Z")]])
    assert [[r.score for r in rs] for rs in out] == [[3.0, 3.0], [9.0]]
    assert mean_score(out[0]) == 3.0


@pytest.mark.parametrize(
    "score, band",
    [(0.0, "1-2"), (1.0, "1-2"), (2.99, "1-2"), (3.0, "3-4"), (4.5, "3-4"), (6.2, "5-6"), (7.0, "7-8"), (8.99, "7-8"), (9.0, "9-10"), (10.0, "9-10"), (12.0, "9-10")],
)
def test_band_for(score, band):
    assert band_for(_criterion(), score) == f"Clarity band {band}"


def test_mean_score_ignores_unscored():
    assert mean_score([JudgeResult(4.0), JudgeResult(None), JudgeResult(8.0)]) == 6.0
    assert mean_score([]) is None
    assert not math.isnan(mean_score([JudgeResult(1.0)]))


@pytest.mark.slow
def test_probability_mode_on_embedded_model(embedded_client):
    """Real next-token probabilities: a score in [1, 10] for every item, the same alone or in a batch."""
    items = [
        JudgeItem("Write a haiku about rain.", "Soft rain on the roof / the gutters hum / night listens", _criterion()),
        JudgeItem("Write a memo on Q3 costs.", "Costs rose. " * 40, _criterion("Depth")),
    ]
    judge = RubricJudge(embedded_client, JudgeConfig(mode="probability"))
    batch = judge.score(items)
    alone = RubricJudge(embedded_client, JudgeConfig(mode="probability")).score(items[:1])
    assert all(r.score is not None and 1.0 <= r.score <= 10.0 for r in batch)
    assert alone[0].score == pytest.approx(batch[0].score, abs=1e-3)
    assert batch[0].reason in _criterion().bands.values()
    assert judge.stats.failed_items == 0


def test_whole_response_judged_by_default_and_cuts_counted(fake_client):
    """No judge context limit by default: a 30,000-character answer reaches the judge whole."""
    long = "filler sentence. " * 1800 + "THE END"
    assert len(long) > 30_000
    seen = []
    fake_client.backend.respond = lambda conv, s: seen.append(user_text(conv)) or '{"score": 7, "reason": "r"}'
    judge = RubricJudge(fake_client, JudgeConfig(mode="generate"))
    (result,) = judge.score([JudgeItem("q", long, _criterion())])
    assert "THE END" in seen[-1] and not result.truncated
    assert judge.stats.truncated == 0

    cut = RubricJudge(fake_client, JudgeConfig(mode="generate", max_judged_chars=12_000))
    results = cut.score([JudgeItem("q", long, _criterion()), JudgeItem("q", "short", _criterion())])
    assert "THE END" not in seen[-2] and [r.truncated for r in results] == [True, False]
    assert cut.stats.truncated == 1 and cut.stats.as_metrics("x")["x/truncated"] == 1.0


def test_judge_top_p_reaches_sampling(fake_client):
    tops = []
    fake_client.backend.respond = lambda conv, s: tops.append((s.temperature, s.top_p)) or '{"score": 5, "reason": "r"}'
    RubricJudge(fake_client, JudgeConfig(mode="generate", temperature=1.0, top_p=0.95)).score(_items(1))
    assert tops == [(1.0, 0.95)]


def test_user_prompt_template_replaces_the_built_in_prompt(fake_client, tmp_path):
    from r2_write.prompts.judge import load_prompt_template

    path = tmp_path / "critic.yaml"
    path.write_text(
        'system: "Be an evaluator."\n'
        'user: |\n  Criteria: ```{criteria}```\n  Query: ```{query}```\n  Response: ```{response}```\n'
        '  Answer {{"score": n, "reason": "..."}}\n'
    )
    template = load_prompt_template(path)
    convs = []
    fake_client.backend.respond = lambda conv, s: convs.append(conv) or '```json\n{"score": 8, "reason": "ok"}\n```'
    (result,) = RubricJudge(fake_client, JudgeConfig(mode="generate"), template).score([JudgeItem("Q?", "R!", _criterion())])
    assert result.score == 8.0
    system, user = convs[0]
    assert system == {"role": "system", "content": "Be an evaluator."}
    assert "Query: ```Q?```" in user["content"] and "Response: ```R!```" in user["content"]
    assert "{'name': 'Clarity', 'criteria_description': 'Is it clarity?', '1-2':" in user["content"]  # as str(dict)
    assert 'Answer {"score": n' in user["content"]

    plain = tmp_path / "prompt.txt"
    plain.write_text("{criteria}\n{response}")
    assert load_prompt_template(plain, system="S").messages("q", "r", _criterion())[0] == {"role": "system", "content": "S"}
    for text, match in (("{response} {answer} {criteria}", "unknown placeholder"), ("{criteria} only", "must contain"),
                        ("{response} {criteria} {", "str.format")):
        plain.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_prompt_template(plain)
    with pytest.raises(ValueError, match="not found"):
        load_prompt_template(tmp_path / "missing.txt")
