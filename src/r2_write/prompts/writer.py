"""Writer prompts: plan, draft, reflect on a critique (in the writer's own voice), revise."""

from __future__ import annotations

from r2_write.llm.base import Conversation

SYSTEM = "You are a skilled writer. You plan before writing, and you improve your drafts by honest self-critique."

PLAN = """Writing request:
{query}

Before writing, make a short plan: the audience, the key points to cover, and the structure.
Write only the plan, as a few bullet points."""

DRAFT = """Writing request:
{query}

Your plan:
{plan}

Write the full response to the request now, following the plan. Write only the response."""

REFLECT = """Writing request:
{query}

Your current draft:
{draft}

A reviewer's notes on the draft:
{critique}

Reflect on your draft in your own voice, in two or three sentences. Say what the draft lacks and why,
starting with "The draft lacks", then say what you will change."""

REVISE = """Writing request:
{query}

Your current draft:
{draft}

Your reflection on it:
{reflection}

Rewrite the draft to fix what the reflection names. Write only the improved response."""

REFLECTION_OPENING = "The draft lacks"


def _conv(user: str) -> Conversation:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def plan_messages(query: str) -> Conversation:
    return _conv(PLAN.format(query=query.strip()))


def draft_messages(query: str, plan: str) -> Conversation:
    return _conv(DRAFT.format(query=query.strip(), plan=plan.strip()))


def reflect_messages(query: str, draft: str, critique: str) -> Conversation:
    return _conv(REFLECT.format(query=query.strip(), draft=draft.strip(), critique=critique.strip()))


def revise_messages(query: str, draft: str, reflection: str) -> Conversation:
    return _conv(REVISE.format(query=query.strip(), draft=draft.strip(), reflection=reflection.strip()))


def format_critique(criteria_names: list[str], scores: list[float | None], reasons: list[str]) -> str:
    """Turn per-criterion judge verdicts into the reviewer notes the writer reflects on."""
    lines = []
    for name, s, r in zip(criteria_names, scores, reasons):
        shown = "unscored" if s is None else f"{s:.1f}/10"
        lines.append(f"- {name} ({shown}): {r or 'no reason given'}")
    return "\n".join(lines)


def ensure_reflection_voice(text: str) -> str:
    """Make sure a reflection reads as the writer's own critique ("The draft lacks ...")."""
    text = text.strip()
    if REFLECTION_OPENING.lower() in text[:200].lower():
        return text
    return f"{REFLECTION_OPENING} what the reviewer asked for. {text}" if text else f"{REFLECTION_OPENING} depth."
