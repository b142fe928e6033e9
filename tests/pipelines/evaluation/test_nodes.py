"""Evaluation nodes on tiny fixtures with a scripted fake model and judge."""

from __future__ import annotations

import json
import math

import mlflow
import pandas as pd
import pytest
from matplotlib.figure import Figure

from r2_write.config import ConfigError
from r2_write.pipelines.evaluation import nodes
from r2_write.pipelines.evaluation.nodes import (
    compare_variants,
    generate_drg_reports,
    generate_writingbench_responses,
    judge_drg_key_points,
    judge_drg_quality,
    judge_writingbench_responses,
    reflection_effects,
    retrieve_drg_passages,
    select_drg_queries,
    select_writingbench_queries,
    summarize_variant,
)
from r2_write.prompts.report_judge import QUALITY_CRITERIA


def test_select_writingbench_queries(wb_queries, eval_params):
    out = select_writingbench_queries(wb_queries, eval_params)
    assert list(out["id"]) == ["1", "2", "900"]  # 2 format + 2 length, query 1 (in both) taken once
    assert list(out["subsets"]) == ["format,length", "format", "length"]
    all_ = select_writingbench_queries(wb_queries, {"writingbench": {"num_queries": {"format": None}}})
    assert list(all_["id"]) == ["1", "2", "3"]  # length not named: none of its own
    one_each = select_writingbench_queries(wb_queries, {"writingbench": {"num_queries": 1}})
    assert list(one_each["id"]) == ["1"]  # the first of format is also the first of length
    assert len(select_writingbench_queries(wb_queries, {"writingbench": {"num_queries": None}})) == 4
    no_tags = select_writingbench_queries(wb_queries.drop(columns="subsets"), {"writingbench": {"num_queries": 2}})
    assert list(no_tags["id"]) == ["1", "2"] and set(no_tags["subsets"]) == {"writingbench"}
    with pytest.raises(ConfigError, match="num_queries"):
        select_writingbench_queries(wb_queries, {"writingbench": {"num_queries": {"format": -1}}})


@pytest.mark.parametrize("bench", ["writingbench", "deepresearchgym"])
def test_judge_override_typo_stops_the_first_node_naming_the_field(wb_queries, drg_queries, bench):
    """Per-benchmark judge overrides are a typed partial JudgeConfig: a misspelt or bad field fails at
    once (the first node, before any generation), named, instead of waiting for the judge node."""
    select = select_writingbench_queries if bench == "writingbench" else select_drg_queries
    queries = wb_queries if bench == "writingbench" else drg_queries
    with pytest.raises(ConfigError) as exc:
        select(queries, {bench: {"judge": {"mode": "generate", "temprature": 0.5}}})
    assert f"parameter 'evaluation.{bench}.judge.temprature'" in str(exc.value)
    with pytest.raises(ConfigError, match=rf"'evaluation\.{bench}\.judge\.max_attempts'.*greater than or equal to 1"):
        select(queries, {bench: {"judge": {"max_attempts": 0}}})
    assert len(select(queries, {bench: {"judge": {"mode": "generate", "max_judged_chars": None}}})) > 0


def test_select_drg_queries_truncates_key_points(drg_queries):
    out = select_drg_queries(drg_queries, {"deepresearchgym": {"num_queries": 2, "max_key_points": 2}})
    assert list(out["id"]) == ["26", "27"]
    assert [len(json.loads(k)) for k in out["key_points"]] == [2, 2]
    assert len(json.loads(drg_queries.loc[0, "key_points"])) == 3  # input untouched


def test_retrieve_closed_book(drg_queries, eval_params):
    out = retrieve_drg_passages(drg_queries, eval_params)
    assert list(out["passages"]) == ["[]", "[]"] and list(out["n_passages"]) == [0, 0]


def test_bad_parameters_name_the_field(wb_queries, eval_params):
    with pytest.raises(ConfigError, match="evaluation.writingbench.num_querys"):
        select_writingbench_queries(wb_queries, {"writingbench": {"num_querys": 1}})
    with pytest.raises(ValueError, match="llm.policy"):
        nodes._policy_client({"judge": {}}, "data/06_models/base_model")


def test_variant_nodes_end_to_end(eval_llm, wb_queries, drg_queries, eval_params, llm_params):
    judge = {"mode": "probability", "max_attempts": 2}
    inputs = select_writingbench_queries(wb_queries, eval_params)
    responses = generate_writingbench_responses("fake-dir", inputs, eval_params, llm_params)
    assert (responses["answer"] == "Final answer with https://example.org/source.").all()
    scores = judge_writingbench_responses(responses, eval_params, llm_params, judge)
    assert len(scores) == 15 and (scores["score"] == 7).all()  # evaluation.writingbench.judge: generate wins

    drg_inputs = select_drg_queries(drg_queries, eval_params)
    reports = generate_drg_reports("fake-dir", drg_inputs, retrieve_drg_passages(drg_inputs, eval_params), eval_params, llm_params)
    labels = judge_drg_key_points(reports, eval_params, llm_params, judge)
    assert list(labels["label"]) == ["Supported", "Omitted", "Supported"]
    quality = judge_drg_quality(reports, eval_params, llm_params, judge)
    assert list(quality["criterion"]) == list(QUALITY_CRITERIA) and (quality["rating"] == 6).all()

    steps = nodes.judge_reflection_steps(responses, eval_params, llm_params, judge)
    assert steps["effect"].tolist() == ["unchanged"] * 3  # draft and revision both score 7
    assert nodes.judge_reflection_steps(responses, {"writingbench": {"reflection_steps": False}}, llm_params, judge).empty
    summary, metrics, breakdown = summarize_variant(responses, scores, labels, quality, steps, variant="sft")
    row = summary.iloc[0]
    assert row["variant"] == "sft"
    assert row["writingbench_overall"] == 70.0 and row["writingbench_education"] == 70.0
    assert row["kpr"] == pytest.approx(200 / 3) and row["kpc"] == 0.0
    assert row["quality_overall"] == 60.0 and row["quality_support"] == 60.0
    assert row["reflections_per_response"] == 1.0
    assert row["steps_unchanged_share"] == 1.0 and row["steps_raised_share"] == 0.0 and row["reflection_steps"] == 3
    assert metrics["eval/sft/writingbench_overall"] == {"value": 70.0, "step": 0}
    assert "eval/sft/writingbench_finance_business" not in metrics  # NaN (no such query): not logged
    assert row["writingbench_subset_format"] == 70.0 and metrics["eval/sft/writingbench_subset_length"]["value"] == 70.0
    assert set(scores["subsets"]) == {"format,length", "format", "length"}
    by = breakdown.set_index(["level", "group"])
    assert by.loc[("subset", "format"), "n_queries"] == 2 and by.loc[("subset", "length"), "n_queries"] == 2
    assert by.loc[("subdomain", "Lesson Plans"), "domain"] == "Education" and (breakdown["variant"] == "sft").all()


@pytest.fixture
def mlflow_tmp(tmp_path):
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.tracking.MlflowClient()
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(before)


def _tiny_tables():
    responses = pd.DataFrame({"response": ["a"], "response_tokens": [3], "error": [None]})
    scores = pd.DataFrame({"id": ["1"], "domain": ["Education"], "criterion": ["c"], "score": [8.0]})
    labels = pd.DataFrame({"id": ["q"], "point_number": [1], "label": ["Supported"]})
    quality = pd.DataFrame({"id": ["q"], "criterion": ["Clarity"], "rating": [5.0]})
    return responses, scores, labels, quality


def test_summaries_log_nested_runs_with_the_same_metric_names(mlflow_tmp):
    with mlflow.start_run(run_name="kedro-run") as parent:
        summarize_variant(*_tiny_tables(), variant="base")
        summarize_variant(*_tiny_tables(), variant="sft")
    children = mlflow_tmp.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'", order_by=["attributes.start_time"]
    )
    assert [c.info.run_name for c in children] == ["eval/base", "eval/sft"]
    assert children[0].data.metrics.keys() == children[1].data.metrics.keys()
    assert children[0].data.metrics["eval/writingbench_overall"] == 80.0
    assert children[1].data.tags["variant"] == "sft"


def test_summary_without_active_run_logs_nothing(monkeypatch):
    monkeypatch.setattr(mlflow, "start_run", lambda *a, **k: pytest.fail("no run must be started"))
    summary, _, _ = summarize_variant(*_tiny_tables(), variant="base")
    assert summary.loc[0, "kpr"] == 100.0


def test_compare_variants_and_reflection_effects(steps):
    summaries = [pd.DataFrame([{"variant": v, "writingbench_overall": s, "kpr": k}]) for v, s, k in (("base", 50.0, 30.0), ("ppo", 60.0, 45.0))]
    table, md, fig, breakdown = compare_variants(*summaries)
    assert breakdown.empty
    assert list(table["variant"]) == ["base", "ppo"]
    assert "| ppo | 60.0 |" in md and isinstance(fig, Figure)
    wb_panel = fig.axes[0]  # first bar of each variant: writingbench_overall
    assert {c.get_label(): c.patches[0].get_height() for c in wb_panel.containers} == {"base": 50.0, "ppo": 60.0}
    effects, fig2 = reflection_effects(steps, steps.head(1), steps.head(0), variants=["ppo", "base"])
    assert list(effects["domain"]) == ["Finance & Business", "Education", "All", "All", "All"]
    assert list(effects["source"]) == ["synthesis"] * 3 + ["ppo", "base"]
    assert effects["raised_share"].tolist()[-2] == 1.0 and effects["steps"].tolist()[-1] == 0
    synthesis_all = effects.set_index(["source", "domain"]).loc[("synthesis", "All")]
    assert synthesis_all["raised_share"] == pytest.approx(1 / 3) and not math.isnan(synthesis_all["lowered_share"])
    assert isinstance(fig2, Figure) and math.isnan(effects["lowered_share"].iloc[-1])  # no step: no share, never 0
    raised_bars = {c.get_label(): [p.get_height() for p in c] for c in fig2.axes[0].containers}["raised"]
    assert raised_bars == pytest.approx(effects["raised_share"].fillna(0.0).tolist())  # one bar per row, as tabled


def _long_report_respond(conv, sampling):
    """Key point judge: Supported only when the report it sees holds the supporting passage."""
    from tests.fakes import user_text

    text = user_text(conv)
    if "[Key point]" in text:
        label = "Supported" if "Tidal locking keeps one face of the Moon toward Earth" in text else "Omitted"
        return '{"label": "%s", "justification": "j"}' % label
    return '{"rating": 5, "justification": "j"}'


def test_30000_character_report_judged_whole(monkeypatch, llm_params):
    """The only support for the key point sits at the end of a 30,000-character report: whole text judged."""
    from tests.fakes import FakeBackend, make_client

    client = make_client(FakeBackend(respond=_long_report_respond))
    monkeypatch.setattr("r2_write.roles.get_client", lambda cfg, **kw: client)
    body = "The Moon orbits the Earth and raises tides in the oceans. " * 520
    report = body + "Tidal locking keeps one face of the Moon toward Earth. Source: https://example.org/moon"
    assert len(report) > 30_000
    reports = pd.DataFrame([{"id": "q1", "query": "Why do we see one side of the Moon?",
                             "key_points": json.dumps([{"point_number": 1, "point_content": "The Moon is tidally locked."}]),
                             "passages": "[]", "report": report, "answer": report, "response_tokens": 7000,
                             "finish_reason": "stop", "error": None}])
    params = {"deepresearchgym": {"judge": {"mode": "generate"}}}
    responses, scores, _, _ = _tiny_tables()

    labels = judge_drg_key_points(reports, params, llm_params, {})
    quality = judge_drg_quality(reports, params, llm_params, {})
    assert list(labels["label"]) == ["Supported"] and not labels["truncated"].any()
    summary, _, _ = summarize_variant(responses, scores, labels, quality, variant="base")
    assert summary.loc[0, "kpr"] == 100.0 and summary.loc[0, "judged_truncated"] == 0

    # a judge context limit cuts the passage away: the key point reads Omitted, and the cut is counted and marked
    cut = {"deepresearchgym": {"judge": {"mode": "generate", "max_judged_chars": 12_000}}}
    labels = judge_drg_key_points(reports, cut, llm_params, {})
    quality = judge_drg_quality(reports, cut, llm_params, {})
    assert list(labels["label"]) == ["Omitted"] and labels["truncated"].all() and quality["truncated"].all()
    summary, metrics, _ = summarize_variant(responses, scores, labels, quality, variant="base")
    assert summary.loc[0, "judged_truncated"] == 1 and summary.loc[0, "drg_judged_truncated"] == 1
    assert metrics["eval/base/judged_truncated"]["value"] == 1.0
    _, md, _, _ = compare_variants(summary)
    assert "| 0.0 † |" in md and "max_judged_chars" in md  # KPR cell marked, footnote present


def test_official_format_files_any_language_and_criteria_count(eval_llm, tmp_path, llm_params):
    """Official WritingBench files (English and Chinese, `criteria` or `checklist`, 1 or 5 criteria) need no code change."""
    from r2_write.catalog.validated_jsonl import ValidatedJSONLDataset
    from r2_write.rubrics.schema import BANDS

    def crit(name):
        return {"name": name, "criteria_description": f"{name}?", **{b: f"{name} {b}" for b in BANDS}}

    zh = {"index": 7, "domain1": "Education", "domain2": "教案", "query": "请为五年级写一份关于分数的教案。",
          "checklist": [crit("清晰度")]}
    en = {"index": 7, "domain1": "Finance & Business", "domain2": "Memos", "query": "Write a cost memo.",
          "criteria": [crit(f"C{k}") for k in range(5)]}
    (tmp_path / "style_subset.jsonl").write_text(json.dumps(zh, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "benchmark_all.jsonl").write_text(json.dumps(en) + "\n", encoding="utf-8")
    queries = ValidatedJSONLDataset(kind="writingbench", filepaths={"all": str(tmp_path / "benchmark_all.jsonl"),
                                                                     "style": str(tmp_path / "style_subset.jsonl")}).load()
    params = {"generation": {"max_new_tokens": 8}, "writingbench": {"num_queries": None, "judge": {"mode": "generate"}}}
    inputs = select_writingbench_queries(queries, params)
    assert list(inputs["id"]) == ["7", "style:7"]
    responses = generate_writingbench_responses("fake-dir", inputs, params, llm_params)
    scores = judge_writingbench_responses(responses, params, llm_params, {})
    assert scores.groupby("id").size().to_dict() == {"7": 5, "style:7": 1}
    summary, _, breakdown = summarize_variant(responses, scores, pd.DataFrame(columns=["id", "label"]),
                                              pd.DataFrame(columns=["id", "criterion", "rating"]), variant="base")
    assert summary.loc[0, "writingbench_overall"] == 70.0 and summary.loc[0, "writingbench_subset_style"] == 70.0
    assert "教案" in set(breakdown["group"])


def test_judge_prompt_template_from_configuration(eval_llm, wb_queries, eval_params, llm_params, tmp_path):
    """evaluation.writingbench.judge_prompt_path: the user's template reaches the judge; a bad path stops the run early."""
    path = tmp_path / "critic.yaml"
    path.write_text('system: "You are an expert evaluator."\nuser: "C: {criteria}\\nQ: {query}\\nR: {response}\\nJSON only."\n')
    params = {**eval_params, "writingbench": {**eval_params["writingbench"], "judge_prompt_path": str(path)}}
    inputs = select_writingbench_queries(wb_queries, params)
    responses = generate_writingbench_responses("fake-dir", inputs.head(1), params, llm_params)
    seen = []
    eval_llm.backend.respond = lambda conv, s: seen.append(conv) or '{"score": 9, "reason": "r"}'
    scores = judge_writingbench_responses(responses, params, llm_params, {})
    assert (scores["score"] == 9).all() and seen[0][0]["content"] == "You are an expert evaluator."
    assert seen[0][1]["content"].startswith("C: {'name': 'A 0'") and "\nR: Final answer with" in seen[0][1]["content"]
    bad = {**eval_params, "writingbench": {**eval_params["writingbench"], "judge_prompt_path": str(tmp_path / "none.yaml")}}
    with pytest.raises(ConfigError, match="judge_prompt_path.*not found"):
        select_writingbench_queries(wb_queries, bad)


def test_judge_roles_fall_back_to_llm_judge(monkeypatch):
    """eval_judge and reward_judge are their own roles when configured, llm.judge otherwise."""
    from r2_write.roles import client_for, judge_for

    seen = []
    monkeypatch.setattr("r2_write.roles.get_client", lambda cfg, **kw: seen.append((kw.get("role"), cfg.model)) or cfg)
    llm = {"judge": {"model": "shared"}}
    client_for(llm, "eval_judge"), judge_for(llm, {})
    client_for({**llm, "eval_judge": {"model": "critic"}, "reward_judge": {"model": "api"}}, "eval_judge")
    judge_for({**llm, "eval_judge": {"model": "critic"}, "reward_judge": {"model": "api"}}, {})
    assert [m for _, m in seen] == ["shared", "shared", "critic", "api"]
    assert nodes.WritingBenchParams().judge_role == nodes.DeepResearchGymParams().judge_role == "eval_judge"
    with pytest.raises(ValueError, match="llm.drg_judge"):
        client_for(llm, "drg_judge")
