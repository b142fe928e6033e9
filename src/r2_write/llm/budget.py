"""Failure budget: a node whose model calls (or fallbacks) failed too often fails, in one line.

Each role's ``llm.<role>.max_failed_share`` (default 0.2) bounds the share of a node's
requests to that role that may fail for good (after the client's retries). Above it the node
raises :class:`~r2_write.llm.base.FailureBudgetError`::

    llm.writer: 12 of 40 writer calls failed (30%, max_failed_share 0.2); most frequent error (12x): HTTP 500 ...

and Kedro saves none of its outputs; at or below it the node finishes as before (failures
listed in its tables and counted in MLflow) and the summary is logged as a warning. Either
way every answer that arrived is already in the response cache, so the rerun after a fix
asks only for what failed.

Fallbacks count the same way: a prompt left on the generic rubric, or a criterion the judge
never scored, is a failure of the rubric writer's or the judge's budget.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from r2_write.llm.base import FailureBudgetError

logger = logging.getLogger(__name__)


def check_failure_budget(
    role: str | None, max_share: float, failed: int, total: int, errors: Iterable[str] | Counter, what: str
) -> str | None:
    """Raise :class:`FailureBudgetError` when ``failed / total > max_share``.

    Returns the one-line summary when something failed within the budget (also logged as a
    warning), None when nothing failed.

    >>> check_failure_budget("judge", 0.2, 0, 10, [], "judged criteria unscored") is None
    True
    >>> check_failure_budget("judge", 0.2, 1, 10, ["bad JSON"], "judged criteria unscored")
    'llm.judge: 1 of 10 judged criteria unscored (10%, max_failed_share 0.2); most frequent error (1x): bad JSON'
    """
    if failed <= 0 or total <= 0:
        return None
    counts = errors if isinstance(errors, Counter) else Counter(e for e in errors if e)
    top, n = counts.most_common(1)[0] if counts else ("(not recorded)", failed)
    share = failed / total
    summary = (
        f"llm.{role or '?'}: {failed} of {total} {what} ({share:.0%}, max_failed_share {max_share:g}); "
        f"most frequent error ({n}x): {top}"
    )
    if share > max_share:
        raise FailureBudgetError(
            f"{summary}. Answers that arrived are cached (a rerun asks only for the rest): fix the cause, "
            f"or raise llm.{role or '?'}.max_failed_share"
        )
    logger.warning(summary)
    return summary


def check_calls(client: Any, before: Any = None, what: str = "model calls failed") -> str | None:
    """The budget of an :class:`~r2_write.llm.client.LLMClient`'s calls since the ``before``
    snapshot of its stats (all of them when None); cache hits count as answered."""
    done = client.stats.since(before) if before is not None else client.stats
    return check_failure_budget(
        client.role, client.cfg.max_failed_share, done.failures, done.calls + done.cache_hits, done.errors, what
    )


def check_judge(judge: Any, what: str = "judged items unscored") -> str | None:
    """The budget of a judge's fallbacks: items left unscored after all attempts (its own
    counters; every node makes a fresh judge)."""
    stats = judge.stats
    return check_failure_budget(
        judge.client.role, judge.client.cfg.max_failed_share, stats.failed_items, stats.items, stats.errors, what
    )
