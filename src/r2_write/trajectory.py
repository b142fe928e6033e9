"""The one thinking-trajectory format: segment markers, renderer and parser.

A trajectory is a sequence of thinking segments followed by the final answer::

    <think>
    <plan>
    ...
    </plan>
    <draft>
    ...
    </draft>
    <reflection>
    The draft lacks X because ...
    </reflection>
    <revision>
    ...
    </revision>
    </think>
    final answer text

``plan`` and ``draft`` open the trajectory; every ``reflection`` is followed by one
``revision`` (a reflection->revision *step*). ``</think>`` is the end-of-thinking marker
that WritingBench-style evaluation cuts at. ``parse(render(t)) == t`` holds for every
trajectory whose segment texts do not themselves contain marker tags.

>>> t = Trajectory([Segment("plan", "p"), Segment("draft", "d")], answer="a")
>>> parse(render(t)) == t
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SEGMENT_KINDS = ("plan", "draft", "reflection", "revision")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
END_OF_THINKING = THINK_CLOSE

_SEGMENT_RE = re.compile(r"<(plan|draft|reflection|revision)>\n?(.*?)\n?</\1>", re.S)


class TrajectoryParseError(ValueError):
    """Raised when a text does not follow the trajectory format."""


@dataclass(frozen=True)
class Segment:
    """One thinking segment: ``kind`` is one of ``SEGMENT_KINDS``."""

    kind: str
    text: str

    def __post_init__(self) -> None:
        if self.kind not in SEGMENT_KINDS:
            raise ValueError(f"segment kind must be one of {SEGMENT_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Trajectory:
    """Thinking segments plus the final answer."""

    segments: list[Segment] = field(default_factory=list)
    answer: str = ""

    def steps(self) -> list[tuple[Segment, Segment]]:
        """Return the (reflection, revision) pairs in order."""
        segs = self.segments
        return [
            (segs[i], segs[i + 1])
            for i in range(len(segs) - 1)
            if segs[i].kind == "reflection" and segs[i + 1].kind == "revision"
        ]

    def versions(self) -> list[str]:
        """Return the successive full texts: the first draft, then each revision."""
        return [s.text for s in self.segments if s.kind in ("draft", "revision")]

    def up_to_version(self, k: int) -> Trajectory:
        """The trajectory cut after its ``k``-th version (0 = the draft), which becomes the answer.

        >>> t = Trajectory([Segment("draft", "d"), Segment("reflection", "r"), Segment("revision", "v")], "v")
        >>> t.up_to_version(0)
        Trajectory(segments=[Segment(kind='draft', text='d')], answer='d')
        """
        ends = [i for i, s in enumerate(self.segments) if s.kind in ("draft", "revision")]
        if not 0 <= k < len(ends):
            raise IndexError(f"version {k} of a trajectory with {len(ends)} versions")
        return Trajectory(self.segments[: ends[k] + 1], answer=self.segments[ends[k]].text)


_TAG_RE = re.compile(r"</?(?:think|plan|draft|reflection|revision)>")
# Any spelling of a marker tag: case, inner spaces, attributes, self-closing (``<Revision>``,
# ``< /draft >``, ``<think/>``); ``<planet>`` or ``<b>`` are not marker tags.
_ANY_TAG_RE = re.compile(r"<\s*/?\s*(?:think|plan|draft|reflection|revision)(?=[\s/>])[^<>]*>", re.I)


def sanitize(text: str) -> str:
    """Remove marker tags (any spelling) from model text so a rendered trajectory always parses back."""
    return _ANY_TAG_RE.sub("", text).strip()


def _render_segment(seg: Segment) -> str:
    return f"<{seg.kind}>\n{seg.text}\n</{seg.kind}>"


def render(trajectory: Trajectory) -> str:
    """Render a trajectory to text with the segment markers."""
    body = "\n".join(_render_segment(s) for s in trajectory.segments)
    return f"{THINK_OPEN}\n{body}\n{THINK_CLOSE}\n{trajectory.answer}"


def segment_spans(text: str) -> list[tuple[str, int, int]]:
    """Return ``(kind, start, end)`` character spans of every segment in ``text``.

    ``end`` is the offset just past the segment's closing tag: the place where a
    process reward for a step ending with that segment belongs.
    """
    think_end = text.find(THINK_CLOSE)
    limit = len(text) if think_end < 0 else think_end
    return [(m.group(1), m.start(), m.end()) for m in _SEGMENT_RE.finditer(text, 0, limit)]


def split_thinking(text: str) -> tuple[str, str]:
    """Split ``text`` at the end-of-thinking marker into (thinking, answer).

    A text without the marker is all answer (as WritingBench treats non-reasoning output).
    """
    idx = text.find(THINK_CLOSE)
    if idx < 0:
        return "", text.strip()
    return text[:idx], text[idx + len(THINK_CLOSE) :].strip()


_ORDER_RE = re.compile(r"(plan )?draft (reflection revision )*")


def format_error(text: str) -> str | None:
    """Why ``text`` is not a well-formed completion in this format, or None if it is.

    Well-formed: ``<think>`` first, then an optional plan, a draft, and any number of
    reflection->revision steps, each segment opened and closed once with nothing but
    whitespace between segments, then ``</think>`` and a non-empty answer free of marker tags in
    any spelling (``<Revision>``, ``< revision >``, ``<think/>``: reflection text must not ride in
    the judged answer). This is the rule the RL reward applies before judging anything.

    >>> format_error(render(Trajectory([Segment("draft", "d")], answer="a"))) is None
    True
    >>> format_error("<think>\\n<draft>\\nd\\n</draft>\\n<revision>\\nv\\n</revision>\\n</think>\\na")
    'segments out of order: draft revision (expected plan? draft (reflection revision)*)'
    """
    stripped = text.lstrip()
    if not stripped.startswith(THINK_OPEN):
        return "does not start with <think>"
    close = stripped.find(THINK_CLOSE)
    if close < 0:
        return "no </think>"
    think, answer = stripped[len(THINK_OPEN) : close], stripped[close + len(THINK_CLOSE) :]
    kinds, open_kind, pos = [], None, 0
    for m in _TAG_RE.finditer(think):
        tag = m.group(0)
        name, closing = tag.strip("</>"), tag.startswith("</")
        between = think[pos : m.start()]
        pos = m.end()
        if open_kind is None and between.strip():
            return "text outside segments"
        if name == "think":
            return "nested <think>"
        if not closing and open_kind is not None:
            return f"<{name}> inside <{open_kind}>"
        if closing and open_kind != name:
            return f"unbalanced </{name}>"
        open_kind = None if closing else name
        if closing:
            kinds.append(name)
    if open_kind is not None:
        return f"unclosed <{open_kind}>"
    if think[pos:].strip():
        return "text outside segments"
    order = "".join(k + " " for k in kinds)
    if not _ORDER_RE.fullmatch(order):
        return f"segments out of order: {order.strip() or 'none'} (expected plan? draft (reflection revision)*)"
    if not answer.strip():
        return "empty answer"
    if _ANY_TAG_RE.search(answer):
        return "marker tags in the answer"
    return None


def parse(text: str, strict: bool = True) -> Trajectory:
    """Parse a rendered trajectory back into segments.

    Args:
        text: Rendered trajectory text (e.g. a model completion).
        strict: If True, raise :class:`TrajectoryParseError` on missing markers or
            text between segments; if False, keep what can be parsed (used on model
            rollouts, which are often malformed).

    Returns:
        The parsed :class:`Trajectory`.
    """
    stripped = text.lstrip()
    if not stripped.startswith(THINK_OPEN) or THINK_CLOSE not in stripped:
        if strict:
            raise TrajectoryParseError("trajectory must start with <think> and contain </think>")
        return Trajectory([], split_thinking(text)[1])
    think, answer_part = stripped[len(THINK_OPEN) :].split(THINK_CLOSE, 1)
    segments, pos = [], 0
    for m in _SEGMENT_RE.finditer(think):
        if strict and think[pos : m.start()].strip():
            raise TrajectoryParseError(f"unexpected text outside segments at offset {pos}")
        segments.append(Segment(m.group(1), m.group(2)))
        pos = m.end()
    if strict and think[pos:].strip():
        raise TrajectoryParseError("unexpected text after the last segment")
    answer = answer_part[1:] if answer_part.startswith("\n") else answer_part
    return Trajectory(segments, answer if strict else answer.strip())
