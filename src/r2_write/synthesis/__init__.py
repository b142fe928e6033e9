"""Synthesis stage logic: the writer-judge loop that writes thinking trajectories.

* :mod:`.loop`: ``SynthesisConfig`` and ``synthesize`` (plan, draft, judge, reflect, revise).
"""

from r2_write.synthesis.loop import SynthesisConfig, synthesize

__all__ = ["SynthesisConfig", "synthesize"]
