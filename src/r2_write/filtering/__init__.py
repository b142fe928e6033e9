"""Filtering stage logic: keep the prompts that give the RL policy a learning signal.

* :mod:`.difficulty`: ``FilterConfig``, ``difficulty_stats`` and the keep rule ``apply_filter``.
"""

from r2_write.filtering.difficulty import FilterConfig, apply_filter, difficulty_stats

__all__ = ["FilterConfig", "apply_filter", "difficulty_stats"]
