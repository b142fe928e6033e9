"""Judge prompts (WritingBench-style: one criterion per call, JSON score 1-10 with a reason)."""

from __future__ import annotations

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


def criterion_messages(query: str, response: str, criterion: Criterion, max_response_chars: int = 12000) -> Conversation:
    """Messages asking the judge to score ``response`` on one ``criterion``."""
    bands = "\n".join(f"- {b}: {criterion.bands[b]}" for b in BANDS)
    user = CRITERION_TEMPLATE.format(
        query=query.strip(),
        response=response.strip()[:max_response_chars],
        name=criterion.name,
        description=criterion.description,
        bands=bands,
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
