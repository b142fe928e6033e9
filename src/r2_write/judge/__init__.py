"""The judges: one dispatch between generate and probability modes for every kind of item.

* :mod:`.judge`: ``JudgeConfig``, the shared dispatch (``ask``, ``generate_with_retries``) and
  ``RubricJudge`` (WritingBench criteria, 1-10);
* :mod:`.report`: ``ReportJudge`` (DeepResearchGym key-point labels and quality ratings);
* :mod:`.parsing`: the parsers of judge answers (score, key-point label, rating);
* :mod:`.reward`: ``judge_score_fn``, the rubric judge as a reward function.
"""
