"""Human-judge agreement: sampling template, binned agreement and Cohen's kappa by hand, CLI."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from r2_write.evaluation.agreement import agreement, cohens_kappa, main, sample_for_human_labels


@pytest.fixture
def labelled() -> pd.DataFrame:
    return pd.DataFrame({"score": [2, 4, 6, 8, 10, 3, 5], "human_score": [1, 6, 6, 9, 7, 3, None]})


def test_agreement_band_hand_computed(labelled):
    # bands judge [0,1,2,3,4,1] vs human [0,2,2,4,3,1]: 3 of 6 match; p_e = 7/36 -> kappa 11/29
    r = agreement(labelled)
    assert r == pytest.approx({"agreement_pct": 50.0, "cohens_kappa": 11 / 29, "n": 6})
    assert agreement(labelled, tolerance=1)["agreement_pct"] == 100.0  # adjacent bands count


def test_agreement_exact_and_within_one_point(labelled):
    assert agreement(labelled, "exact")["agreement_pct"] == pytest.approx(100 * 2 / 6)
    assert agreement(labelled, "exact", tolerance=1)["agreement_pct"] == pytest.approx(100 * 4 / 6)


def test_agreement_labels_and_empty():
    df = pd.DataFrame({"score": ["Supported", "Omitted", "Omitted"], "human_score": ["supported", "Omitted", "Contradicted"]})
    assert agreement(df, "label")["agreement_pct"] == pytest.approx(200 / 3)
    r = agreement(pd.DataFrame({"score": [5], "human_score": [""]}))
    assert r["n"] == 0 and math.isnan(r["agreement_pct"])
    with pytest.raises(ValueError, match="human_score"):
        agreement(pd.DataFrame({"score": [1]}))


def test_cohens_kappa_matches_sklearn():
    rng = random.Random(3)
    a = [rng.randint(0, 4) for _ in range(200)]
    b = [x if rng.random() < 0.6 else rng.randint(0, 4) for x in a]
    assert cohens_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohens_kappa([1, 1], [1, 1]) == 1.0


def test_sample_template_is_reproducible():
    judged = pd.DataFrame({"id": list("abcdef"), "criterion": ["c"] * 6, "score": [1, 2, None, 4, 5, 6]})
    s1, s2 = sample_for_human_labels(judged, 3, seed=7), sample_for_human_labels(judged, 3, seed=7)
    pd.testing.assert_frame_equal(s1, s2)
    assert len(s1) == 3 and s1["human_score"].isna().all() and s1["score"].notna().all()
    assert len(sample_for_human_labels(judged, 50)) == 5  # only scored items


def test_cli_sample_then_report(tmp_path, capsys):
    judged = pd.DataFrame({"id": ["a", "a", "b"], "criterion": ["x", "y", "x"], "score": [7.0, 3.0, 9.0]})
    responses = pd.DataFrame({"id": ["a", "b"], "query": ["qa", "qb"], "answer": ["aa", "ab"], "extra": [1, 2]})
    judged.to_parquet(tmp_path / "scores.parquet")
    responses.to_parquet(tmp_path / "responses.parquet")
    out = tmp_path / "labels.csv"
    assert main(["sample", "--judged", str(tmp_path / "scores.parquet"), "--responses", str(tmp_path / "responses.parquet"),
                 "--n", "3", "--out", str(out)]) == 0
    template = pd.read_csv(out)
    assert {"query", "answer", "human_score"} <= set(template.columns) and "extra" not in template.columns
    template["human_score"] = [8, 1, 9]  # bands 3/3, 0/1, 4/4
    template.to_csv(out, index=False)
    assert main(["report", "--labels", str(out)]) == 0
    assert "n=3 agreement=66.7%" in capsys.readouterr().out
