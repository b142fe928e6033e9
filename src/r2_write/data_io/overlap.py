"""The overlap check: data sets that must be disjoint (training prompts, evaluation benchmarks)
share no text after normalisation."""

from __future__ import annotations

import hashlib
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from functools import cache
from itertools import combinations
from typing import Any

from r2_write.data_io.schemas import is_missing, short_text


class DataOverlapError(ValueError):
    """Two data sets that must be disjoint share texts (after normalisation)."""


@cache
def _punctuation_table() -> dict[int, str]:
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


def normalized_text_hash(text: str) -> str:
    """SHA-1 of ``text`` after NFKC, lower-casing, dropping punctuation and collapsing whitespace.

    >>> normalized_text_hash("Hello,  World!") == normalized_text_hash("hello world")
    True
    """
    t = unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_table())
    t = " ".join(t.split())
    return hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest()


def check_disjoint(named_sets: Mapping[str, Iterable[str] | Mapping[Any, str]], max_examples: int = 3) -> None:
    """Raise :class:`DataOverlapError` if any two named sets share a text (after normalisation).

    Each value is an iterable of texts or a mapping ``id -> text`` (a dict or a pandas Series
    indexed by id), in which case the message names ids. ``None``/NaN texts are ignored.

    Args:
        named_sets: e.g. ``{"train_prompts": df.set_index("id")["prompt"], "writingbench": texts}``.
        max_examples: How many shared texts to quote per overlapping pair.

    Raises:
        DataOverlapError: naming every overlapping pair of sets and a few examples.
    """
    index: dict[str, dict[str, tuple[Any, str]]] = {}
    for name, items in named_sets.items():
        pairs = items.items() if hasattr(items, "items") else ((None, t) for t in items)
        table: dict[str, tuple[Any, str]] = {}
        for key, text in pairs:
            if is_missing(text):
                continue
            if not isinstance(text, str):
                raise TypeError(f"check_disjoint: set {name!r} holds a {type(text).__name__}, expected str")
            table.setdefault(normalized_text_hash(text), (key, text))
        index[name] = table
    problems = []
    for a, b in combinations(index, 2):
        common = sorted(index[a].keys() & index[b].keys(), key=lambda h: str(index[a][h][0]) + index[a][h][1])
        if not common:
            continue
        examples = []
        for h in common[:max_examples]:
            (ka, text), (kb, _) = index[a][h], index[b][h]
            ids = ", ".join(f"{n} id {k!r}" for n, k in ((a, ka), (b, kb)) if k is not None)
            examples.append(f"{short_text(text)} ({ids})" if ids else short_text(text))
        problems.append(
            f"sets {a!r} and {b!r} share {len(common)} text(s), e.g. " + "; ".join(examples)
        )
    if problems:
        raise DataOverlapError(
            "data sets overlap (texts equal after lower-casing and removing punctuation and extra "
            "whitespace): " + " | ".join(problems)
        )
