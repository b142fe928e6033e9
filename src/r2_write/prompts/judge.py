"""Judge prompts (WritingBench-style: one criterion per call, JSON score 1-10 with a reason).

The judged text is shown whole unless a judge context limit (``max_judged_chars``) is
configured: :func:`cut_text` applies it and reports whether it cut, so every cut is counted.
A user template (``evaluation.writingbench.judge_prompt_path``, see :func:`load_prompt_template`)
replaces the built-in prompt for judges trained on another template, such as the official
WritingBench critic model.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from r2_write.llm.base import Conversation
from r2_write.rubrics.schema import BANDS, Criterion

SYSTEM = "You are an expert evaluator of writing. You judge strictly and fairly, and you answer only in JSON."

CRITERION_TEMPLATE = """Evaluate the response to the writing request below against ONE criterion.

[Request]
{query}

[Response]
{response}

[Criterion] {name}: {description}
Score bands:
{bands}

Give an integer score from 1 to 10 and a one-sentence reason naming what is missing or done well.
Answer with JSON only, exactly: {{"score": <integer 1-10>, "reason": "<reason>"}}"""

# assistant prefix for probability-weighted scoring: the next token is the score
SCORE_PREFIX = '{"score": '
SCORE_TOKENS = [str(i) for i in range(1, 11)]

TEMPLATE_FIELDS = ("query", "response", "criteria")
"""Placeholders a user template may use (``str.format`` style, JSON braces doubled as ``{{ }}``)."""


def cut_text(text: str, max_chars: int | None) -> tuple[str, bool]:
    """``text`` stripped, cut to ``max_chars`` characters when a limit is set; and whether it was cut.

    >>> cut_text("  abcdef ", None)
    ('abcdef', False)
    >>> cut_text("abcdef", 4)
    ('abcd', True)
    """
    text = text.strip()
    if max_chars is None or len(text) <= max_chars:
        return text, False
    return text[:max_chars], True


@dataclass(frozen=True)
class PromptTemplate:
    """A user-supplied judge prompt: ``user`` with ``{query}``, ``{response}``, ``{criteria}``; optional ``system``.

    ``{criteria}`` is filled with the criterion as the official WritingBench scripts pass it:
    the criterion's dict (name, criteria_description, bands "1-2" ... "9-10") formatted by
    Python's ``str()``.
    """

    user: str
    system: str | None = None
    source: str = "<template>"

    def __post_init__(self) -> None:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(self.user) if f is not None}
        except ValueError as exc:
            raise ValueError(f"{self.source}: not a str.format template ({exc}); write literal braces as {{{{ and }}}}") from None
        unknown = sorted(names - set(TEMPLATE_FIELDS))
        if unknown:
            raise ValueError(f"{self.source}: unknown placeholder(s) {unknown}; allowed: {list(TEMPLATE_FIELDS)}")
        missing = [f for f in ("response", "criteria") if f not in names]
        if missing:
            raise ValueError(f"{self.source}: the template must contain {{{missing[0]}}}")

    def messages(self, query: str, response: str, criterion: Criterion) -> Conversation:
        user = self.user.format(query=query, response=response, criteria=str(criterion.to_row()))
        return ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": user}]


def load_prompt_template(path: str | Path, system: str | None = None) -> PromptTemplate:
    """Load a judge prompt template from a file of the user's own (never shipped with the project).

    Formats: ``.yaml`` / ``.yml`` / ``.json`` holding ``user`` (required) and ``system``
    (optional) strings; any other file is the user template itself, its system line then
    ``system``. Raises ``ValueError`` naming the file when it is missing or malformed.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"judge prompt template {p} not found (evaluation.writingbench.judge_prompt_path)")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ValueError(f"{p}: unreadable ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("user"), str):
            raise ValueError(f"{p}: expected a mapping with a 'user' string (and optionally 'system')")
        sys_ = data.get("system", system)
        if sys_ is not None and not isinstance(sys_, str):
            raise ValueError(f"{p}: 'system' must be a string")
        return PromptTemplate(data["user"].strip(), sys_.strip() if sys_ else None, str(p))
    return PromptTemplate(text.strip(), system, str(p))


def criterion_messages(
    query: str,
    response: str,
    criterion: Criterion,
    max_response_chars: int | None = None,
    template: PromptTemplate | None = None,
) -> Conversation:
    """Messages asking the judge to score ``response`` on one ``criterion``.

    The response is shown whole unless ``max_response_chars`` is set (see :func:`cut_text`);
    ``template`` replaces the built-in prompt.
    """
    response = cut_text(response, max_response_chars)[0]
    if template is not None:
        return template.messages(query.strip(), response, criterion)
    bands = "\n".join(f"- {b}: {criterion.bands[b]}" for b in BANDS)
    user = CRITERION_TEMPLATE.format(
        query=query.strip(),
        response=response,
        name=criterion.name,
        description=criterion.description,
        bands=bands,
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
