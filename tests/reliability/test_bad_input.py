"""Bad input: fuzzed parameters, fuzzed rubric-writer answers, and a broken prompts file.

* Parameters: every config model (all pydantic) is validated by ``parse_params`` on seeded
  mutations of a valid dict: wrong types, negative and huge numbers, NaN/inf, empty and huge
  strings, unknown keys, non-mappings. A case passes when
  the config is built or a :class:`ConfigError` names the mutated field; any other
  exception is unhandled.
* Rubric-writer answers: seeded mutations of a valid 5-criterion answer go through
  ``parse_rubric``; only :class:`RubricParseError` may come out.
* End to end: ``kedro run --pipelines rubrics`` on a prompts file with one bad row exits
  non-zero, names file, line and field at the end of its output, and writes nothing.

Reproduce or widen with ``R2_FUZZ_SEED`` and ``R2_FUZZ_CASES`` (cases per model, default 60).
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections import Counter

import pytest

from r2_write.config import ConfigError, parse_params
from r2_write.evaluation.retrieval import RetrieverConfig
from r2_write.filtering import FilterConfig
from r2_write.judge.judge import JudgeConfig
from r2_write.llm.config import LLMConfig, SamplingParams
from r2_write.pipelines.evaluation.nodes import DeepResearchGymParams, EvaluationParams, WritingBenchParams
from r2_write.pipelines.filtering.nodes import FilteringParams
from r2_write.pipelines.rubrics.nodes import PoolParams, RubricsParams
from r2_write.pipelines.scoring.nodes import ScoringParams
from r2_write.pipelines.synthesis.nodes import SynthesisParams
from r2_write.rewards.process import ProcessRewardConfig
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rubrics.schema import BANDS
from r2_write.rubrics.writer import RubricParseError, RubricWriterConfig, parse_rubric
from r2_write.synthesis import SynthesisConfig
from r2_write.training.grpo import GRPOParams
from r2_write.training.sft import LoraParams, SFTParams
from tests.reliability._project import JUDGE_MARKER, kedro_args, run_kedro, server_params

SEED = int(os.environ.get("R2_FUZZ_SEED", "20261125"))
CASES = int(os.environ.get("R2_FUZZ_CASES", "60"))
KEY = "sk-r2w-SECRET-0123456789"
WRONG = [None, 0, -1, -10**12, 10**30, 1.5, -0.5, float("nan"), float("inf"), True, False, "", " ", "abc", "-1",
         "x" * 100_000, KEY, [], [1, "a"], {}, {"a": 1}]
UNKNOWN = ["unknown_field", "", "x" * 5000, "max_rounds ", "Temperature"]

# (model, parameter path, where its valid values come from: a key path in conf/base or None)
MODELS = [
    (LLMConfig, "llm.writer", ("llm", "writer")),
    (SamplingParams, "evaluation.generation", ("evaluation", "generation")),
    (JudgeConfig, "judge", ("judge",)),
    (SynthesisConfig, "synthesis.loop", ("synthesis", "loop")),
    (SynthesisParams, "synthesis", ("synthesis",)),
    (RubricsParams, "rubrics", ("rubrics",)),
    (RubricWriterConfig, "rubrics.writer", ("rubrics", "writer")),
    (PoolParams, "prompt_pools", ("prompt_pools",)),
    (FilteringParams, "filtering", ("filtering",)),
    (FilterConfig, "filtering.rule", ("filtering", "rule")),
    (ScoringParams, "scoring", ("scoring",)),
    (EvaluationParams, "evaluation", ("evaluation",)),
    (WritingBenchParams, "evaluation.writingbench", ("evaluation", "writingbench")),
    (DeepResearchGymParams, "evaluation.deepresearchgym", ("evaluation", "deepresearchgym")),
    (RetrieverConfig, "evaluation.deepresearchgym.retriever", ("evaluation", "deepresearchgym", "retriever")),
    (SFTParams, "sft", ("sft",)),
    (LoraParams, "sft.lora", ("sft", "lora")),
    (GRPOParams, "grpo", ("grpo",)),
    (PPOConfig, "ppo", ("ppo",)),
    (ProcessRewardConfig, "ppo.reward", ("ppo", "reward")),
]


def _valid(model, conf: dict, keys: tuple, where: str) -> dict:
    """A valid parameter dict of ``model``: its block in conf/base, every field filled in."""
    block = conf
    for k in keys:
        block = (block or {}).get(k)
    block = copy.deepcopy(dict(block or {}))
    if model is PPOConfig:
        block.pop("reward", None)
    return parse_params(model, block, where).model_dump(mode="python")


def _paths(obj, prefix=()) -> list[tuple]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _parent(obj, path):
    for k in path[:-1]:
        obj = obj[k]
    return obj


def _mutate(rng: random.Random, data: dict) -> tuple[object, list[tuple], str]:
    """One or two mutations; returns (data, the paths touched, what was done)."""
    if rng.random() < 0.05:
        value = rng.choice([[], [1, 2], "abc", 42, "x" * 100_000])
        return value, [()], "not a mapping"
    data = copy.deepcopy(data)
    touched, kinds = [], []
    for _ in range(rng.choice((1, 1, 1, 2))):
        paths = _paths(data)
        kind = rng.choice(("wrong", "wrong", "wrong", "unknown", "delete"))
        if kind == "unknown" or not paths:
            dicts = [()] + [p for p in paths if isinstance(_parent(data, (*p, None)), dict)]
            where = rng.choice(dicts)
            target = _parent(data, (*where, None))
            key = rng.choice(UNKNOWN)
            if key in target:
                continue
            target[key] = rng.choice(WRONG[:12])
            touched.append((*where, key))
            kinds.append("unknown")
        else:
            path = rng.choice(paths)
            parent = _parent(data, path)
            if kind == "delete":
                if isinstance(parent, dict):
                    del parent[path[-1]]  # every field has a default: only a cross-field check can fail
                    touched.append(path)
                    kinds.append("delete")
                continue
            parent[path[-1]] = rng.choice(WRONG)
            touched.append(path)
            kinds.append("wrong")
    return data, touched, "+".join(kinds) or "none"


def _names_field(message: str, where: str, touched: list[tuple]) -> bool:
    """The error names one of the mutated fields (full path, or the field's own name)."""
    for path in touched:
        full = ".".join(str(p) for p in (where, *path))
        last = str(path[-1])[:80] if path else where
        if f"'{full}" in message or last in message:
            return True
    return False


def test_parameter_fuzz(project_params):
    rng = random.Random(SEED)
    report = Counter()
    unhandled, unclear = [], []
    for model, where, keys in MODELS:
        valid = _valid(model, project_params, keys, where)
        for case in range(CASES):
            data, touched, kind = _mutate(rng, valid)
            report["cases"] += 1
            try:
                parse_params(model, data, where)
                report["accepted"] += 1
            except ConfigError as exc:
                report["rejected"] += 1
                msg = str(exc)
                # the value of a *key* field is never shown (other fields' values are)
                leaked = any(KEY in line for line in msg.splitlines() if "key" in line.split(":")[0])
                if not _names_field(msg, where, touched) or len(msg) > 3000 or leaked:
                    unclear.append(f"{model.__name__} case {case} ({kind} {touched}): {msg[:300]}")
            except Exception as exc:  # noqa: BLE001 - what the fuzz is looking for
                unhandled.append(f"{model.__name__} case {case} ({kind} {touched}): {type(exc).__name__}: {str(exc)[:200]}")
    print(f"\nparameter fuzz: {report['cases']} cases over {len(MODELS)} models: {report['accepted']} accepted, "
          f"{report['rejected']} rejected with a ConfigError, {len(unhandled)} unhandled, "
          f"{len(unclear)} unclear messages (seed {SEED})")
    assert not unhandled, "\n".join(unhandled[:10])
    assert not unclear, "\n".join(unclear[:10])
    assert report["rejected"] > report["cases"] // 3  # the mutations do break configs


def test_a_key_given_as_api_key_env_is_rejected_and_not_echoed():
    with pytest.raises(ConfigError, match=r"llm\.judge\.api_key_env") as err:
        parse_params(LLMConfig, {"api_key_env": KEY}, "llm.judge")
    assert KEY not in str(err.value)
    assert parse_params(LLMConfig, {"api_key_env": "R2_TEST_KEY"}, "llm.judge").api_key_env == "R2_TEST_KEY"


# ------------------------------------------------------------------ rubric-writer answers


def _rubric_rows(n: int = 5) -> list[dict]:
    return [{"name": f"Criterion {k}", "criteria_description": f"Is aspect {k} handled?", **{b: f"band {b}" for b in BANDS}}
            for k in range(n)]


def _mutate_text(rng: random.Random, rows: list[dict]) -> str:
    kind = rng.randrange(12)
    text = json.dumps(rows, ensure_ascii=False, indent=rng.choice((None, 2)))
    if kind == 0:  # truncated
        return text[: rng.randrange(len(text))]
    if kind == 1:  # random characters changed
        chars = list(text)
        for _ in range(rng.randint(1, 8)):
            chars[rng.randrange(len(chars))] = rng.choice('[]{}",:\\\x00é中 \n1')
        return "".join(chars)
    if kind == 2:  # a value of the wrong type
        rows = copy.deepcopy(rows)
        path = rng.choice(_paths(rows))
        _parent(rows, path)[path[-1]] = rng.choice(WRONG[:-4] + [[{}], {"1-2": 3}])
        return json.dumps(rows)
    if kind == 3:  # a field or a band missing, or a row too many / too few
        rows = copy.deepcopy(rows)
        if rng.random() < 0.5:
            row = rng.choice(rows)
            del row[rng.choice(list(row))]
        else:
            rows = rows[:-1] if rng.random() < 0.5 else rows + rows[:1]
        return json.dumps(rows)
    if kind == 4:  # chatter and code fences around it
        return f"Sure! Here is the rubric:\n```json\n{text}\n```\nHope this helps [1]."
    if kind == 5:  # not a list
        return rng.choice(['{"criteria": ' + text + "}", "5", '"text"', "null", "", "no rubric today"])
    if kind == 6:  # deep nesting
        depth = rng.choice((50, 5000, 100_000))
        return "[" * depth + "]" * depth
    if kind == 7:  # a huge number or a huge string
        return rng.choice(["[" + "9" * 5000 + "]", json.dumps([{"name": "x" * 200_000}] * 5), "[1e999, -1e999, NaN]"])
    if kind == 8:  # empty strings
        rows = copy.deepcopy(rows)
        row = rng.choice(rows)
        row[rng.choice(list(row))] = rng.choice(("", "   ", "\n"))
        return json.dumps(rows)
    if kind == 9:  # invalid escapes and lone surrogates
        return text.replace("band", rng.choice(("\\ud800", "\\x41", "\\u12", "\\")), 1)
    if kind == 10:  # two lists, or brackets inside strings
        return text + " and also " + text if rng.random() < 0.5 else text.replace("Is aspect", "Is [aspect]")
    return text  # valid


def test_rubric_writer_output_fuzz():
    rng = random.Random(SEED)
    rows = _rubric_rows()
    assert len(parse_rubric(json.dumps(rows), 5)) == 5
    counts, unhandled = Counter(), []
    for case in range(CASES * 10):
        text = _mutate_text(rng, rows)
        n = rng.choice((5, 5, 5, 1, 0, -1))
        try:
            parse_rubric(text, n)
            counts["parsed"] += 1
        except RubricParseError:
            counts["rejected"] += 1
        except BaseException as exc:  # noqa: BLE001 - what the fuzz is looking for
            unhandled.append(f"case {case}: {type(exc).__name__}: {str(exc)[:150]} for {text[:80]!r}")
    print(f"\nrubric-writer fuzz: {CASES * 10} answers: {counts['parsed']} parsed, {counts['rejected']} rejected "
          f"with RubricParseError, {len(unhandled)} unhandled")
    assert not unhandled, "\n".join(unhandled[:10])
    assert counts["parsed"] and counts["rejected"]


# ------------------------------------------------------------------ a broken prompts file


@pytest.mark.slow
def test_bad_prompt_row_stops_the_run_with_one_clear_message(new_project, fault_server):
    project = new_project()
    raw = project / "data" / "01_raw" / "prompts.jsonl"
    lines = raw.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[2])
    row["prompt"] = 42
    lines[2] = json.dumps(row)
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    server = fault_server(judge_marker=JUDGE_MARKER)
    before = sorted(p.relative_to(project) for p in (project / "data").rglob("*"))

    proc = run_kedro(project, kedro_args("rubrics", server_params(server.base_url)), check=False)

    tail = proc.stderr.strip().splitlines()[-3:]
    print("\nlast lines of stderr:\n  " + "\n  ".join(tail))
    assert proc.returncode != 0
    assert any("prompts.jsonl line 3, field 'prompt': expected a string" in line for line in tail), tail
    assert "Traceback" not in proc.stderr + proc.stdout  # one clear line, not a stack trace
    assert sorted(p.relative_to(project) for p in (project / "data").rglob("*")) == before, "the run wrote data"
    assert server.requests == 0
