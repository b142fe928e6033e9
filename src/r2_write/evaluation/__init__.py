"""Benchmark evaluation: WritingBench and DeepResearchGym scoring, retrieval, agreement, comparison.

* :mod:`.writingbench`: responses, rubric judging, ``aggregate_writingbench``;
* :mod:`.deepresearchgym`: reports, key-point label and quality rating frames (judged by
  :class:`r2_write.judge.report.ReportJudge`), ``aggregate_drg``;
* :mod:`.retrieval`: ``build_retriever`` (closed book, local BM25, HTTP search API);
* :mod:`.agreement`: human-label sampling and judge agreement (also a CLI);
* :mod:`.compare`: shared metric names, the variants x metrics table and charts.
"""

from r2_write.evaluation.deepresearchgym import aggregate_drg
from r2_write.evaluation.writingbench import aggregate_writingbench

__all__ = ["aggregate_drg", "aggregate_writingbench"]
