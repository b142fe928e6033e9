"""Rubric-writer prompts: five instance-specific WritingBench criteria for one query."""

from __future__ import annotations

import json

from r2_write.llm.base import Conversation

SYSTEM = "You design precise grading rubrics for writing tasks. You answer only with JSON."

EXAMPLE = {
    "name": "Audience Fit",
    "criteria_description": "Does the text address the stated audience's needs and level?",
    "1-2": "Ignores the audience entirely.",
    "3-4": "Rarely considers the audience.",
    "5-6": "Partly adapted to the audience.",
    "7-8": "Well adapted with minor lapses.",
    "9-10": "Perfectly tailored to the audience.",
}

TEMPLATE = """Writing request:
{query}

Write exactly {n} grading criteria specific to THIS request. Each criterion is a JSON object
with the keys "name", "criteria_description", "1-2", "3-4", "5-6", "7-8", "9-10" (what a
response scoring in that band looks like). Example of one criterion:
{example}

Answer with a JSON list of {n} such objects and nothing else."""


def rubric_messages(query: str, n_criteria: int = 5) -> Conversation:
    """Messages asking for ``n_criteria`` criteria for ``query``."""
    user = TEMPLATE.format(query=query.strip(), n=n_criteria, example=json.dumps(EXAMPLE, ensure_ascii=False))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
