"""The fault-injecting OpenAI-compatible test server (lives in ``r2_write.llm.fake_server``)."""

from r2_write.llm.fake_server import FAULTS, OPT_IN_FAULTS, FaultServer, judge_score

__all__ = ["FAULTS", "OPT_IN_FAULTS", "FaultServer", "judge_score"]
