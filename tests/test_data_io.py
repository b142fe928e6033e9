"""Loaders for prompts, WritingBench and DeepResearchGym: real files load, broken rows fail clearly."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from r2_write.data_io import (
    DataOverlapError,
    DRGQuery,
    InputDataError,
    check_disjoint,
    load_deepresearchgym,
    load_prompts,
    load_writingbench,
    normalized_text_hash,
    queries_from_frame,
    resolve_benchmark_dir,
    validate_prompts,
    writingbench_frame,
)
from r2_write.rubrics.schema import BANDS, DOMAINS

PROJECT = Path(__file__).resolve().parents[1]
RAW_PROMPTS = PROJECT / "data" / "01_raw" / "prompts.jsonl"


@pytest.fixture(scope="module")
def bench() -> Path:
    try:
        return resolve_benchmark_dir(None)
    except InputDataError as exc:
        pytest.skip(f"benchmarks not available: {exc}")


def _criterion(name: str = "Clarity", **override) -> dict:
    row = {
        "name": name,
        "criteria_description": f"How well the text does {name.lower()}.",
        **{band: f"band {band} description" for band in BANDS},
    }
    row.update(override)
    return row


def _wb_row(index=1, key="criteria", **override) -> dict:
    row = {
        "index": index,
        "domain1": "Education",
        "domain2": "Lesson Plans",
        "query": "Write a lesson plan on fractions for grade five.",
        key: [_criterion(n) for n in ("Clarity", "Structure", "Accuracy", "Engagement", "Format")],
    }
    row.update(override)
    return row


def _prompt(pid="p1", **override) -> dict:
    row = {"id": pid, "domain": "Education", "language": "en", "prompt": "Explain ratios to a child."}
    row.update(override)
    return row


def _drg(qid="7", n=3, **override) -> dict:
    row = {
        "id": qid,
        "query": "why do tides happen",
        "key_points": [{"point_number": i + 1, "point_content": f"Key point {i + 1}."} for i in range(n)],
    }
    row.update(override)
    return row


def _write(tmp_path: Path, lines: list, name: str = "data.jsonl") -> Path:
    """Write rows (dicts are JSON-encoded, str/bytes written verbatim) as a JSON-lines file."""
    out = []
    for line in lines:
        if isinstance(line, bytes):
            out.append(line)
        elif isinstance(line, str):
            out.append(line.encode("utf-8"))
        else:
            out.append(json.dumps(line, ensure_ascii=False).encode("utf-8"))
    path = tmp_path / name
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize(
    ("name", "rows", "key"), [("format_subset.jsonl", 342, "criteria"), ("length_subset.jsonl", 222, "checklist")]
)
def test_writingbench_subsets_load(bench, name, rows, key):
    path = bench / "writingbench" / name
    queries = load_writingbench(path)
    assert len(queries) == rows
    assert {q.domain for q in queries} <= set(DOMAINS)
    assert all(len(q.criteria) == 5 for q in queries)
    assert all(tuple(c.bands) == BANDS for q in queries for c in q.criteria)
    assert len({q.id for q in queries}) == rows
    first = json.loads(path.open(encoding="utf-8").readline())
    assert key in first
    assert queries[0].id == str(first["index"])
    assert queries[0].criteria[0].name == first[key][0]["name"]
    assert len(load_writingbench(path, limit=7)) == 7


def test_writingbench_frame_round_trip_through_parquet(bench, tmp_path):
    queries = load_writingbench(bench / "writingbench" / "length_subset.jsonl", limit=20)
    frame = writingbench_frame(queries)
    assert list(frame.columns) == ["id", "domain", "subdomain", "query", "criteria"]
    frame.to_parquet(tmp_path / "q.parquet")
    assert queries_from_frame(pd.read_parquet(tmp_path / "q.parquet")) == queries


def test_deepresearchgym_loads(bench):
    queries = load_deepresearchgym(bench / "deepresearchgym" / "queries.jsonl")
    assert len(queries) == 60
    assert all(isinstance(q, DRGQuery) for q in queries)
    assert sum(len(q.key_points) for q in queries) == 1005
    assert min(len(q.key_points) for q in queries) == 3
    assert max(len(q.key_points) for q in queries) == 42
    assert len(load_deepresearchgym(bench / "deepresearchgym" / "queries.jsonl", limit=5)) == 5


def test_raw_prompts_load():
    df = load_prompts(RAW_PROMPTS)
    assert list(df.columns) == ["id", "domain", "language", "prompt"]
    assert 55 <= len(df) <= 65
    per_domain = df["domain"].value_counts()
    assert set(per_domain.index) == set(DOMAINS)
    assert per_domain.between(8, 12).all()
    assert 8 <= (df["language"] == "zh").sum() <= 12
    assert df["id"].is_unique
    pd.testing.assert_frame_equal(validate_prompts(df), df)


def test_raw_prompts_are_not_benchmark_queries(bench):
    prompts = load_prompts(RAW_PROMPTS).set_index("id")["prompt"]
    wb = {
        q.id: q.query
        for name in ("format_subset.jsonl", "length_subset.jsonl")
        for q in load_writingbench(bench / "writingbench" / name)
    }
    drg = {q.id: q.query for q in load_deepresearchgym(bench / "deepresearchgym" / "queries.jsonl")}
    check_disjoint({"raw_prompts": prompts, "writingbench": wb, "deepresearchgym": drg})


# --------------------------------------------------------------------------- rejection

_LONG = "x" * 51

REJECTIONS = [
    # (id, loader, lines, kwargs, expected message fragment)
    ("unknown-domain", "prompts", [_prompt(), _prompt("p2", domain="Sport")], {},
     "line 2, field 'domain': unknown domain 'Sport'; expected one of 'Academic & Engineering'"),
    ("truncated", "prompts", [json.dumps(_prompt())[:25]], {}, "line 1: invalid JSON"),
    ("wrong-type", "prompts", [_prompt(prompt=5)], {}, "line 1, field 'prompt': expected a string, got integer"),
    ("null", "prompts", [_prompt(domain=None)], {}, "line 1, field 'domain': expected a string, got null"),
    ("empty", "prompts", [_prompt(prompt="  \n ")], {}, "line 1, field 'prompt': must not be empty"),
    ("huge", "prompts", [_prompt(prompt=_LONG)], {"max_chars": 50},
     "line 1, field 'prompt': text is 51 characters long, over the limit of 50"),
    ("huge-id", "prompts", [_prompt(pid=_LONG)], {"max_chars": 50}, "line 1, field 'id': text is 51"),
    ("non-utf8", "prompts", [_prompt(), _prompt("p2"), b'{"id": "p3", "prompt": "caf\xe9"}'], {},
     "line 3: not valid UTF-8 (byte 0xe9"),
    ("duplicate", "prompts", [_prompt("p1"), _prompt("p2"), _prompt("p1")], {},
     "line 3, field 'id': duplicate id 'p1' (first seen on line 1)"),
    ("blank-lines-counted", "prompts", [_prompt(), "", "   ", _prompt("p2", language="fr")], {},
     "line 4, field 'language': unknown language 'fr'; expected one of 'en', 'zh'"),
    ("top-level-list", "prompts", [[_prompt()]], {}, "line 1: expected a JSON object, got list"),
    ("top-level-string", "prompts", ['"just text"'], {}, "line 1: expected a JSON object, got string"),
    ("missing-field", "prompts", [{"id": "p1", "domain": "Education"}], {},
     "line 1, field 'prompt': required field is missing"),
    ("bool-id", "prompts", [_prompt(pid=True)], {}, "field 'id': expected a string or integer id, got boolean"),
    ("surrogate", "prompts", ['{"id": "p1", "domain": "Education", "prompt": "a\\ud800b"}'], {},
     "field 'prompt': contains an unpaired surrogate escape"),
    ("deep-json", "prompts", ["[" * 100_000], {}, "line 1:"),
    ("only-blank", "prompts", ["", "  "], {}, "no data lines found"),
    ("wb-band", "writingbench", [_wb_row(criteria=[_criterion(), _criterion(), _criterion(**{"9-10": ""})])], {},
     "line 1, field 'criteria[2].9-10': must not be empty"),
    ("wb-checklist-name", "writingbench",
     [_wb_row(), _wb_row(2, key="checklist", checklist=[{"criteria_description": "d"}])], {},
     "line 2, field 'checklist[0].name': required field is missing"),
    ("wb-no-criteria", "writingbench", [{k: v for k, v in _wb_row().items() if k != "criteria"}], {},
     "line 1, field 'criteria': required field is missing"),
    ("wb-both-keys", "writingbench", [_wb_row(checklist=[])], {},
     "line 1, field 'checklist': both 'criteria' and 'checklist' are present"),
    ("wb-empty-criteria", "writingbench", [_wb_row(criteria=[])], {},
     "line 1, field 'criteria': must hold at least one item"),
    ("wb-criteria-type", "writingbench", [_wb_row(criteria="be clear")], {},
     "line 1, field 'criteria': expected a list, got string"),
    ("wb-criterion-type", "writingbench", [_wb_row(checklist=["be clear"], key="checklist")], {},
     "line 1, field 'checklist[0]': expected a JSON object, got string"),
    ("wb-index-type", "writingbench", [_wb_row(index=1.5)], {},
     "line 1, field 'index': expected a string or integer id, got number"),
    ("wb-domain", "writingbench", [_wb_row(domain1="Sports")], {}, "line 1, field 'domain1': unknown domain 'Sports'"),
    ("wb-duplicate", "writingbench", [_wb_row(3), _wb_row(4), _wb_row("3")], {},
     "line 3, field 'index': duplicate id '3' (first seen on line 1)"),
    ("drg-point-type", "deepresearchgym", [_drg(key_points=[{"point_number": "1", "point_content": "x"}])], {},
     "line 1, field 'key_points[0].point_number': expected a positive integer, got string"),
    ("drg-point-zero", "deepresearchgym", [_drg(key_points=[{"point_number": 0, "point_content": "x"}])], {},
     "field 'key_points[0].point_number': expected a positive integer, got 0"),
    ("drg-point-dup", "deepresearchgym", [_drg(key_points=[{"point_number": 1, "point_content": "x"}] * 2)], {},
     "field 'key_points': point_number 1 appears twice (key_points[0] and key_points[1])"),
    ("drg-missing-kp", "deepresearchgym", [{"id": "1", "query": "q"}], {},
     "line 1, field 'key_points': required field is missing"),
    ("drg-empty-content", "deepresearchgym", [_drg(), _drg("8", key_points=[{"point_number": 1, "point_content": ""}])],
     {}, "line 2, field 'key_points[0].point_content': must not be empty"),
    ("drg-all-skipped", "deepresearchgym", [_drg(n=0)], {}, "no query has key points"),
]

LOADERS = {"prompts": load_prompts, "writingbench": load_writingbench, "deepresearchgym": load_deepresearchgym}


@pytest.mark.parametrize(("loader", "lines", "kwargs", "expected"), [r[1:] for r in REJECTIONS],
                         ids=[r[0] for r in REJECTIONS])
def test_rejects_broken_rows(tmp_path, loader, lines, kwargs, expected):
    path = _write(tmp_path, lines)
    with pytest.raises(InputDataError) as exc:
        LOADERS[loader](path, **kwargs)
    message = str(exc.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_missing_file(tmp_path, loader):
    with pytest.raises(InputDataError, match=r"nope\.jsonl: file not found"):
        LOADERS[loader](tmp_path / "nope.jsonl")


def test_utf16_file_is_named(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(_prompt()) + "\n", encoding="utf-16")
    with pytest.raises(InputDataError, match="line 1: not valid UTF-8.*looks UTF-16"):
        load_prompts(path)


def test_blank_lines_bom_and_defaults(tmp_path):
    path = tmp_path / "p.jsonl"
    body = "\n\n".join(json.dumps(r, ensure_ascii=False) for r in (
        {"id": "a", "domain": "Education", "prompt": " 写一首诗。 "},
        {"id": 2, "domain": "Education", "language": "zh", "prompt": "x", "extra": [1]},
    ))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8") + b"\r\n\n   \n")
    df = load_prompts(path)
    assert df.to_dict("records") == [
        {"id": "a", "domain": "Education", "language": "en", "prompt": "写一首诗。"},
        {"id": "2", "domain": "Education", "language": "zh", "prompt": "x"},
    ]


def test_drg_skips_queries_without_key_points(tmp_path, caplog):
    path = _write(tmp_path, [_drg("1"), _drg("2", n=0), _drg("3")])
    with caplog.at_level(logging.WARNING, logger="r2_write.data_io"):
        queries = load_deepresearchgym(path)
    assert [q.id for q in queries] == ["1", "3"]
    assert "skipped 1 query with no key points: 2 (line 2)" in caplog.text


def test_writingbench_accepts_both_shapes(tmp_path):
    path = _write(tmp_path, [_wb_row(1), _wb_row(2, key="checklist")])
    a, b = load_writingbench(path)
    assert (a.id, b.id) == ("1", "2")
    assert a.criteria == b.criteria and a.domain == "Education" and a.subdomain == "Lesson Plans"


@pytest.mark.parametrize("limit", [-1, 1.5, "3"])
def test_bad_limit(tmp_path, limit):
    with pytest.raises(ValueError, match="limit must be"):
        load_writingbench(_write(tmp_path, [_wb_row()]), limit=limit)


# --------------------------------------------------------------------------- frames


def test_validate_prompts_frame():
    df = pd.DataFrame([_prompt("a"), _prompt("b", language=None)])
    assert validate_prompts(df)["language"].tolist() == ["en", "en"]
    no_lang = pd.DataFrame([{"id": "a", "domain": "Education", "prompt": "p"}])
    assert validate_prompts(no_lang)["language"].tolist() == ["en"]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([_prompt("a"), _prompt("b", domain="Sport")], "raw_prompts row 2, field 'domain': unknown domain 'Sport'"),
        (
            [_prompt("a"), _prompt("b"), _prompt("a")],
            "raw_prompts row 3, field 'id': duplicate id 'a' (first seen on row 1)",
        ),
        ([_prompt("a", prompt=float("nan"))], "raw_prompts row 1, field 'prompt': expected a string, got null"),
        ([{"id": "a", "domain": "Education"}], "raw_prompts: missing column(s) ['prompt']"),
    ],
)
def test_validate_prompts_frame_rejects(rows, expected):
    with pytest.raises(InputDataError) as exc:
        validate_prompts(pd.DataFrame(rows), source="raw_prompts")
    assert expected in str(exc.value)


def test_queries_from_frame_rejects(tmp_path):
    good = writingbench_frame(load_writingbench(_write(tmp_path, [_wb_row(1)])))
    bad = good.assign(criteria=["[{"])
    with pytest.raises(InputDataError, match="rubric_queries row 1, field 'criteria': invalid JSON"):
        queries_from_frame(bad)
    empty = good.assign(criteria=["[]"])
    with pytest.raises(InputDataError, match="row 1, field 'criteria': must hold at least one item"):
        queries_from_frame(empty)
    bad_domain = good.assign(domain=["Sport"])
    with pytest.raises(InputDataError, match="row 1, field 'domain': unknown domain 'Sport'"):
        queries_from_frame(bad_domain, source="rubric_queries")


# --------------------------------------------------------------------------- locations


def test_resolve_benchmark_dir_configured(tmp_path, monkeypatch):
    assert resolve_benchmark_dir(str(tmp_path)) == tmp_path.resolve()
    missing = tmp_path / "nowhere"
    with pytest.raises(InputDataError) as exc:
        resolve_benchmark_dir(str(missing))
    message = str(exc.value)
    assert message.startswith(f"benchmark directory {missing} not found")
    assert "https://github.com/X-PLUG/WritingBench" in message
    assert "benchmarks_root in conf/base/globals.yml" in message and "--params benchmarks_root=" in message


def test_resolve_benchmark_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("R2_BENCHMARKS_DIR", str(tmp_path))
    assert resolve_benchmark_dir(None) == tmp_path.resolve()
    assert resolve_benchmark_dir("") == tmp_path.resolve()
    monkeypatch.setenv("R2_BENCHMARKS_DIR", str(tmp_path / "gone"))
    with pytest.raises(InputDataError, match="R2_BENCHMARKS_DIR"):
        resolve_benchmark_dir(None)


def test_resolve_benchmark_dir_default(monkeypatch):
    monkeypatch.delenv("R2_BENCHMARKS_DIR", raising=False)
    default = PROJECT.parent / "shared" / "benchmarks"
    if not default.is_dir():
        pytest.skip("no ../shared/benchmarks beside the project")
    assert resolve_benchmark_dir(None) == default.resolve()


# --------------------------------------------------------------------------- overlap


def test_normalized_text_hash():
    h = normalized_text_hash
    assert h("Write a Poem, please!") == h("  write a poem   please ")
    assert h("请写一首诗。") == h("请写一首诗")
    assert h("ＡＢＣ") == h("abc")
    assert h("write a poem") != h("write a poet")
    assert len(h("x")) == 40


def test_check_disjoint_passes_and_fails():
    check_disjoint({"a": ["one text", "two"], "b": ["three"], "c": {}})
    with pytest.raises(DataOverlapError) as exc:
        check_disjoint({
            "train": pd.Series(["Write a sonnet.", "Other"], index=["p1", "p2"]),
            "eval": {"17": "write a SONNET", "18": "new"},
            "extra": ["nothing shared", None],
        })
    message = str(exc.value)
    assert "sets 'train' and 'eval' share 1 text(s)" in message
    assert "'Write a sonnet.' (train id 'p1', eval id '17')" in message
    assert "'extra'" not in message


def test_writingbench_files_frame_merges_shared_queries_and_tags_subsets(tmp_path):
    from r2_write.data_io import writingbench_files_frame

    full = _write(tmp_path, [_wb_row(1), _wb_row(2, query="Draft a memo.", domain2="Memos")], "benchmark_all.jsonl")
    style = _write(tmp_path, [_wb_row(2, key="checklist", query="Draft a memo.", domain2="Memos")], "style_subset.jsonl")
    other = _write(tmp_path, [_wb_row(1, query="A different query that reuses index 1.")], "length_subset.jsonl")
    out = writingbench_files_frame([full, style, other])
    assert list(out["id"]) == ["1", "2", "length:1"]  # identical query merged; a reused index made unique
    assert list(out["subsets"]) == ["benchmark_all", "benchmark_all,style", "length"]
    named = writingbench_files_frame({"all": full, "style": style})
    assert list(named["subsets"]) == ["all", "all,style"]
    with pytest.raises(InputDataError, match="subset name"):
        writingbench_files_frame({"a,b": full})
    with pytest.raises(InputDataError, match="no WritingBench file"):
        writingbench_files_frame({})


def test_writingbench_files_frame_reads_the_real_subsets(bench):
    from r2_write.data_io import writingbench_files_frame

    out = writingbench_files_frame({"format": bench / "writingbench" / "format_subset.jsonl",
                                    "length": bench / "writingbench" / "length_subset.jsonl"})
    # the two files reuse indices for other queries and give their 58 shared queries other criteria
    assert len(out) == 342 + 222 and out["id"].is_unique
    assert out["subsets"].value_counts().to_dict() == {"format": 342, "length": 222}
    assert out["subdomain"].ne("").all()
