"""Seeded fuzzing of the JSON-lines loaders: every broken file must fail with InputDataError.

Each case takes a few valid lines of a real file, applies one or two mutations (truncation,
wrong types, empty and huge strings, invalid UTF-8, duplicate ids, deleted fields, non-object
lines, blank lines, random byte changes) and loads the result. A case passes when the loader
returns data or raises :class:`InputDataError` whose message names the file and a line; any
other exception is an unhandled case and fails the test. Mutations that always break a file
(e.g. invalid UTF-8) must be rejected, and single-line mutations must be blamed on their line.

Reproduce or widen a run with ``R2_FUZZ_SEED=<int>`` and ``R2_FUZZ_CASES=<n>`` (default 300).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from r2_write.data_io import MAX_CHARS, InputDataError, load_deepresearchgym, load_prompts, load_writingbench

PROJECT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("R2_FUZZ_SEED", "20261125"))
CASES = int(os.environ.get("R2_FUZZ_CASES", "300"))
LINES_PER_CASE = 6

_WRONG_VALUES = [None, 0, 1, -3, 1.5, float("nan"), True, False, "", "x", [], [1, 2], {}, {"a": 1}, [{}]]
# stray bytes, truncated sequences, surrogates, overlong and 5-byte forms: never valid UTF-8
_BAD_UTF8 = [b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80",
             b"\xc0\xaf"]
_NON_OBJECTS = ["[1, 2]", '"a string"', "42", "null", "true", "[{}]", "[" * 5000 + "]" * 5000]


@dataclass
class Mutation:
    """What one mutation did: its name, the 0-based line it touched and whether it must fail."""

    name: str
    line: int | None = None
    must_fail: bool = False


@dataclass
class Report:
    cases: int = 0
    loaded: int = 0
    rejected: int = 0
    unhandled: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    by_mutation: Counter = field(default_factory=Counter)


# --------------------------------------------------------------------------- mutations


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """All paths to values inside a JSON object (excluding the root)."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _get_parent(obj: Any, path: tuple) -> Any:
    for k in path[:-1]:
        obj = obj[k]
    return obj


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _mutate_value(rng: random.Random, lines: list[bytes], kind: str) -> Mutation:
    i = rng.randrange(len(lines))
    obj = json.loads(lines[i])
    if kind == "delete_field":
        paths = [p for p in _paths(obj) if isinstance(_get_parent(obj, p), dict)]
        p = rng.choice(paths)
        del _get_parent(obj, p)[p[-1]]
        lines[i] = _dump(obj)
        return Mutation(f"delete_field:{p}", i)
    if kind == "wrong_type":
        p = rng.choice(_paths(obj))
        _get_parent(obj, p)[p[-1]] = rng.choice(_WRONG_VALUES)
        lines[i] = _dump(obj)
        return Mutation(f"wrong_type:{p}", i)
    strings = [p for p in _paths(obj) if isinstance(_get_parent(obj, p)[p[-1]], str)]
    p = rng.choice(strings)
    if kind == "empty_string":
        _get_parent(obj, p)[p[-1]] = rng.choice(["", " ", "\t\n "])
        lines[i] = _dump(obj)
        return Mutation(f"empty_string:{p}", i)
    assert kind == "huge_string"
    _get_parent(obj, p)[p[-1]] = "y" * (MAX_CHARS + 1 + rng.randrange(1000))
    lines[i] = _dump(obj)
    return Mutation(f"huge_string:{p}", i, must_fail=True)


def _pick(rng: random.Random, lines: list[bytes], min_len: int = 1) -> int | None:
    """A random line that is not blank (blank lines are skipped by the loaders), or None."""
    candidates = [i for i, line in enumerate(lines) if len(line.strip()) >= min_len]
    return rng.choice(candidates) if candidates else None


def _truncate(rng: random.Random, lines: list[bytes]) -> Mutation:
    i = _pick(rng, lines, min_len=2)
    if i is None:  # an earlier mutation left nothing long enough to cut
        return _non_object(rng, lines)
    cut = rng.randrange(1, len(lines[i]))
    lines[i] = lines[i][:cut]
    return Mutation(f"truncate@{cut}", i, must_fail=True)


def _invalid_utf8(rng: random.Random, lines: list[bytes]) -> Mutation:
    i = rng.randrange(len(lines))
    at = rng.randrange(len(lines[i]) + 1)
    lines[i] = lines[i][:at] + rng.choice(_BAD_UTF8) + lines[i][at:]
    return Mutation(f"invalid_utf8@{at}", i, must_fail=True)


def _duplicate_line(rng: random.Random, lines: list[bytes]) -> Mutation:
    i = _pick(rng, lines)
    if i is None:
        return _non_object(rng, lines)
    j = rng.randrange(i + 1, len(lines) + 1)
    lines.insert(j, lines[i])
    return Mutation(f"duplicate_line:{i}->{j}", j, must_fail=True)


def _non_object(rng: random.Random, lines: list[bytes]) -> Mutation:
    i = rng.randrange(len(lines))
    lines[i] = rng.choice(_NON_OBJECTS).encode()
    return Mutation("non_object", i, must_fail=True)


def _blank_lines(rng: random.Random, lines: list[bytes]) -> Mutation:
    for _ in range(rng.randrange(1, 4)):
        lines.insert(rng.randrange(len(lines) + 1), rng.choice([b"", b"   ", b"\t", b"\r"]))
    return Mutation("blank_lines")


def _byte_noise(rng: random.Random, lines: list[bytes]) -> Mutation:
    i = _pick(rng, lines)
    if i is None:
        return _non_object(rng, lines)
    b = bytearray(lines[i])
    for _ in range(rng.randrange(1, 4)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    lines[i] = bytes(b)
    return Mutation("byte_noise", None)  # may split the line: no line to blame


_KINDS: list[tuple[str, Callable[[random.Random, list[bytes]], Mutation]]] = [
    ("truncate", _truncate),
    ("wrong_type", lambda r, ls: _mutate_value(r, ls, "wrong_type")),
    ("empty_string", lambda r, ls: _mutate_value(r, ls, "empty_string")),
    ("huge_string", lambda r, ls: _mutate_value(r, ls, "huge_string")),
    ("invalid_utf8", _invalid_utf8),
    ("duplicate_line", _duplicate_line),
    ("delete_field", lambda r, ls: _mutate_value(r, ls, "delete_field")),
    ("non_object", _non_object),
    ("blank_lines", _blank_lines),
    ("byte_noise", _byte_noise),
]


def _mutate(rng: random.Random, lines: list[bytes]) -> list[Mutation]:
    """Apply one mutation (nine cases in ten) or two; value mutations need parseable lines."""
    done: list[Mutation] = []
    for _ in range(1 if rng.random() < 0.9 else 2):
        name, fn = rng.choice(_KINDS)
        if name in {"wrong_type", "empty_string", "huge_string", "delete_field"} and done:
            name, fn = "truncate", _truncate
        done.append(fn(rng, lines))
    return done


# --------------------------------------------------------------------------- runner


def _run(name: str, source: list[bytes], load: Callable[[Path], Any], tmp_path: Path, seed: int) -> Report:
    rng = random.Random(seed)
    report = Report()
    path = tmp_path / f"fuzz_{name}.jsonl"
    for case in range(CASES):
        lines = rng.sample(source, min(LINES_PER_CASE, len(source)))
        mutations = _mutate(rng, lines)
        path.write_bytes(b"\n".join(lines) + b"\n")
        label = f"{name} case {case} (seed {seed}): {[m.name for m in mutations]}"
        report.cases += 1
        for m in mutations:
            report.by_mutation[m.name.split(":")[0].split("@")[0]] += 1
        try:
            load(path)
        except InputDataError as exc:
            report.rejected += 1
            msg = str(exc)
            if path.name not in msg or "line" not in msg:
                report.problems.append(f"{label}: message lacks file name or 'line': {msg[:200]}")
            elif len(mutations) == 1 and mutations[0].line is not None:
                lineno = mutations[0].line + 1
                if not re.search(rf"line {lineno}\b", msg):
                    report.problems.append(f"{label}: expected line {lineno} in: {msg[:200]}")
            if len(msg) > 1000:
                report.problems.append(f"{label}: message is {len(msg)} characters long")
        except Exception as exc:  # noqa: BLE001 - the point is to catch everything else
            report.unhandled.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            report.loaded += 1
            if len(mutations) == 1 and mutations[0].must_fail:
                report.problems.append(f"{label}: loaded although the mutation must be rejected")
    return report


def _source_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


FUZZ_TARGETS = {  # (a benchmark file under benchmarks_root, else under the project; path; loader)
    "prompts": (False, "data/01_raw/prompts.jsonl", load_prompts),
    "writingbench_criteria": (True, "writingbench/format_subset.jsonl", load_writingbench),
    "writingbench_checklist": (True, "writingbench/length_subset.jsonl", load_writingbench),
    "deepresearchgym": (True, "deepresearchgym/queries.jsonl", load_deepresearchgym),
}


@pytest.mark.parametrize("target", list(FUZZ_TARGETS))
def test_fuzz_loader(target, tmp_path, request):
    in_benchmarks, relative, load = FUZZ_TARGETS[target]
    path = (request.getfixturevalue("benchmarks_root") if in_benchmarks else PROJECT) / relative
    source = _source_lines(path)
    load(path)  # the unmutated file loads
    seed = SEED + list(FUZZ_TARGETS).index(target)
    report = _run(target, source, load, tmp_path, seed)
    print(
        f"\nfuzz {target}: cases tried={report.cases} loaded={report.loaded} rejected={report.rejected} "
        f"unhandled={len(report.unhandled)} problems={len(report.problems)} seed={seed} "
        f"mutations={dict(sorted(report.by_mutation.items()))}"
    )
    assert report.cases == CASES
    assert not report.unhandled, "\n".join(report.unhandled[:10])
    assert not report.problems, "\n".join(report.problems[:10])
    assert report.rejected > CASES // 3  # the mutations really break files
