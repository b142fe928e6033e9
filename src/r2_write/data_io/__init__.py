"""The project's input data: row schemas, loaders and the overlap check.

* :mod:`.schemas`: row models of raw prompts, WritingBench and DeepResearchGym lines, and
  ``InputDataError`` (names the file, line/row and field of the first bad value);
* :mod:`.loaders`: ``load_prompts``, ``validate_prompts``, ``load_writingbench``,
  ``writingbench_files_frame``, ``queries_from_frame``, ``load_deepresearchgym``;
* :mod:`.overlap`: ``check_disjoint`` and ``normalized_text_hash`` (``DataOverlapError``).
"""

from r2_write.data_io.loaders import (
    load_deepresearchgym,
    load_prompts,
    load_writingbench,
    queries_from_frame,
    subset_name,
    validate_prompts,
    writingbench_files_frame,
    writingbench_frame,
)
from r2_write.data_io.overlap import DataOverlapError, check_disjoint, normalized_text_hash
from r2_write.data_io.schemas import MAX_CHARS, DRGQuery, InputDataError, KeyPoint, PromptRow

__all__ = [
    "MAX_CHARS",
    "DRGQuery",
    "DataOverlapError",
    "InputDataError",
    "KeyPoint",
    "PromptRow",
    "check_disjoint",
    "load_deepresearchgym",
    "load_prompts",
    "load_writingbench",
    "normalized_text_hash",
    "queries_from_frame",
    "subset_name",
    "validate_prompts",
    "writingbench_files_frame",
    "writingbench_frame",
]
