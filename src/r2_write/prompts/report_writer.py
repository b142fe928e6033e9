"""Report-writer prompt for DeepResearchGym queries (closed book or with retrieved passages).

With passages, the writer sees each one with its source URL and is asked to cite the URLs it
uses and to list them under a final "Sources" heading: the DeepResearchGym Support criterion
gives 0 to a report without source URLs. Closed book, the writer is told not to invent URLs
(so closed-book reports score low on Support by design, as in the official evaluation).
"""

from __future__ import annotations

from r2_write.llm.base import Conversation

SYSTEM = "You are a careful research analyst. You write well-structured, evidence-based reports."

REPORT_TEMPLATE = """Write a research report that answers the question below.

[Question]
{query}
{sources}
The report should be structured like an in-depth analysis: a short introduction, clearly
marked sections that each cover a distinct aspect (causes, evidence, perspectives, implications),
and a conclusion. Be specific, balanced and analytical rather than generic.
{citation_rule}"""

SOURCES_BLOCK = """
[Retrieved sources]
{passages}
"""

CITE_RULE = (
    "Support your claims with the retrieved sources: cite a source by its URL in brackets right after "
    "the claim it supports, and end the report with a \"Sources\" section listing every URL you cited."
)
CLOSED_BOOK_RULE = "Write from your own knowledge. Do not invent URLs or references."


def format_passages(passages: list[dict], max_chars: int = 1500) -> str:
    """Number the passages as ``[i] URL`` followed by their (truncated) text.

    >>> format_passages([{"url": "https://a.org", "text": "Alpha."}])
    '[1] https://a.org\\nAlpha.'
    """
    return "\n\n".join(
        f"[{i}] {p.get('url', '').strip()}\n{str(p.get('text', '')).strip()[:max_chars]}"
        for i, p in enumerate(passages, start=1)
    )


def report_messages(query: str, passages: list[dict] | None = None, max_passage_chars: int = 1500) -> Conversation:
    """Messages asking for a research report on ``query``.

    Args:
        query: The DeepResearchGym question.
        passages: Retrieved ``{"url", "text"}`` dicts; empty or None writes closed book.
        max_passage_chars: Characters kept of each passage's text.

    Returns:
        A system + user conversation.
    """
    sources = SOURCES_BLOCK.format(passages=format_passages(passages, max_passage_chars)) if passages else ""
    user = REPORT_TEMPLATE.format(
        query=query.strip(), sources=sources, citation_rule=CITE_RULE if passages else CLOSED_BOOK_RULE
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
