"""The trajectory format: render/parse round trip, strict errors, sanitize, spans, split."""

from __future__ import annotations

import random
import re
import string

import pytest

from r2_write.trajectory import (
    SEGMENT_KINDS,
    THINK_CLOSE,
    Segment,
    Trajectory,
    TrajectoryParseError,
    parse,
    render,
    sanitize,
    segment_spans,
    split_thinking,
)

ALPHABET = string.ascii_letters + string.digits + " \n\t.,;:!?'\"()-<>/{}[]#*_é中文" + "\n" * 8 + "<>/" * 4
_MARKER = re.compile(r"</?(?:think|plan|draft|reflection|revision)>")


def _random_text(rng: random.Random, max_len: int = 60) -> str:
    """Random text (multi-line, edge whitespace, stray angle brackets) without marker tags."""
    raw = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, max_len)))
    while _MARKER.search(raw):  # removing one tag can join the halves of another
        raw = _MARKER.sub("", raw)
    return raw


def _random_trajectory(rng: random.Random) -> Trajectory:
    segs = [Segment("plan", _random_text(rng)), Segment("draft", _random_text(rng))]
    for _ in range(rng.randint(0, 3)):
        segs += [Segment("reflection", _random_text(rng)), Segment("revision", _random_text(rng))]
    return Trajectory(segs, answer=_random_text(rng, 120))


@pytest.fixture
def trajectory() -> Trajectory:
    return Trajectory(
        [
            Segment("plan", "- audience\n- structure"),
            Segment("draft", "First draft."),
            Segment("reflection", "The draft lacks examples."),
            Segment("revision", "Second draft with examples."),
        ],
        answer="Second draft with examples.",
    )


def test_round_trip(trajectory):
    assert parse(render(trajectory)) == trajectory


@pytest.mark.parametrize("seed", range(200))
def test_round_trip_randomised(seed):
    t = _random_trajectory(random.Random(seed))
    assert parse(render(t)) == t


def test_render_layout(trajectory):
    text = render(trajectory)
    assert text.startswith("<think>\n<plan>\n")
    assert text.count(THINK_CLOSE) == 1
    assert text.endswith(f"{THINK_CLOSE}\n{trajectory.answer}")


def test_steps_and_versions(trajectory):
    steps = trajectory.steps()
    assert [(a.kind, b.kind) for a, b in steps] == [("reflection", "revision")]
    assert trajectory.versions() == ["First draft.", "Second draft with examples."]


def test_segment_kind_is_checked():
    with pytest.raises(ValueError, match="segment kind"):
        Segment("summary", "x")


@pytest.mark.parametrize(
    "text, match",
    [
        ("no markers at all", "must start with <think>"),
        ("<think>\n<plan>\np\n</plan>\nno end marker", "must start with <think>"),
        ("answer first <think>\n</think>", "must start with <think>"),
        ("<think>\nstray\n<plan>\np\n</plan>\n</think>\na", "outside segments"),
        ("<think>\n<plan>\np\n</plan>\ntrailing\n</think>\na", "after the last segment"),
    ],
)
def test_strict_errors(text, match):
    with pytest.raises(TrajectoryParseError, match=match):
        parse(text)


def test_lenient_parse_keeps_what_it_can():
    assert parse("just an answer  ", strict=False) == Trajectory([], "just an answer")
    t = parse("<think>\nstray\n<plan>\np\n</plan>\njunk\n</think>\n answer ", strict=False)
    assert t.segments == [Segment("plan", "p")]
    assert t.answer == "answer"


def test_sanitize_removes_markers_so_render_parses():
    dirty = "<think>I <plan>will</plan> cheat </think> here</revision>"
    assert sanitize(dirty) == "I will cheat  here"
    t = Trajectory([Segment("plan", sanitize(dirty)), Segment("draft", "d")], answer=sanitize("a</think>b"))
    assert parse(render(t)) == t


def test_sanitize_keeps_other_tags():
    assert sanitize("  <b>bold</b> <planet> ") == "<b>bold</b> <planet>"


def test_segment_spans_offsets(trajectory):
    text = render(trajectory)
    spans = segment_spans(text)
    assert [k for k, _, _ in spans] == [s.kind for s in trajectory.segments]
    for (kind, start, end), seg in zip(spans, trajectory.segments):
        assert text[start:end] == f"<{kind}>\n{seg.text}\n</{kind}>"
    assert all(end <= text.index(THINK_CLOSE) for _, _, end in spans)
    assert all(a[2] < b[1] for a, b in zip(spans, spans[1:]))


def test_segment_spans_ignore_answer_part():
    text = "<think>\n<plan>\np\n</plan>\n</think>\n<draft>\nnot a segment\n</draft>"
    assert [k for k, _, _ in segment_spans(text)] == ["plan"]


def test_segment_spans_without_end_marker_scans_all():
    text = "<think>\n<plan>\np\n</plan>\n<draft>\nd\n</draft>"
    assert [k for k, _, _ in segment_spans(text)] == ["plan", "draft"]


def test_split_thinking(trajectory):
    thinking, answer = split_thinking(render(trajectory))
    assert answer == trajectory.answer
    assert thinking.startswith("<think>") and THINK_CLOSE not in thinking
    assert split_thinking("  plain answer ") == ("", "plain answer")


def test_all_kinds_render():
    t = Trajectory([Segment(k, k.upper()) for k in SEGMENT_KINDS], answer="")
    assert parse(render(t)) == t


@pytest.mark.parametrize(
    "answer",
    ["a\n<revision>\nb\n</revision>", "a <Revision>b", "a <REFLECTION>", "a < revision >", "a <revision id=1>",
     "a </Draft >", "a <think/>", "a </think> b"],
)
def test_any_segment_tag_after_think_is_a_format_violation(answer):
    from r2_write.trajectory import format_error

    text = render(Trajectory([Segment("draft", "d")], answer="x")).removesuffix("x") + answer
    assert format_error(text) == "marker tags in the answer"


@pytest.mark.parametrize("answer", ["a <b>bold</b>", "a <planet> <drafting> <plans>", "if a < b and c > d", "<answer>a"])
def test_other_tags_in_the_answer_are_allowed(answer):
    from r2_write.trajectory import format_error

    assert format_error(render(Trajectory([Segment("draft", "d")], answer=answer))) is None


def test_sanitize_removes_any_spelling_of_a_marker_tag():
    from r2_write.trajectory import format_error

    dirty = "a <Revision>b</REVISION> < draft >c<think/>"
    assert sanitize(dirty) == "a b c"
    assert format_error(render(Trajectory([Segment("draft", "d")], answer=sanitize(dirty)))) is None
