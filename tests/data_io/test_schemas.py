"""Row schemas: broken rows of every input fail with one message naming the file (or table), line (or row) and field."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from r2_write.data_io import InputDataError, load_writingbench, queries_from_frame, validate_prompts, writingbench_frame
from tests.data_io.rows import LOADERS, _criterion, _drg, _prompt, _wb_row, _write

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

@pytest.mark.parametrize(("loader", "lines", "kwargs", "expected"), [r[1:] for r in REJECTIONS],
                         ids=[r[0] for r in REJECTIONS])
def test_rejects_broken_rows(tmp_path, loader, lines, kwargs, expected):
    path = _write(tmp_path, lines)
    with pytest.raises(InputDataError) as exc:
        LOADERS[loader](path, **kwargs)
    message = str(exc.value)
    assert message.startswith(str(path)), message
    assert expected in message, message



# --------------------------------------------------------------------------- frames


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
