"""The difficulty-filtering rule on hand-made score tables."""

import pandas as pd
import pytest

from r2_write.config import ConfigError, parse_params
from r2_write.filtering import FilterConfig, apply_filter, difficulty_stats


def _samples(scores: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": i, "sample": j, "score": s} for i, ss in scores.items() for j, s in enumerate(ss)]
    )


def test_rule_keeps_informative_prompts_and_names_reasons():
    stats = difficulty_stats(
        _samples(
            {
                "ok": [4.0, 6.0, 5.0],  # mean 5, spread > 0.5
                "easy": [9.0, 9.5, 9.0],  # mean above high
                "hard": [1.0, 2.0, 1.5],  # mean below low
                "flat": [5.0, 5.0, 5.0],  # no spread
                "broken": [float("nan"), float("nan"), 6.0],  # one scored sample only
            }
        )
    )
    out = apply_filter(stats, FilterConfig(low=3, high=8, min_spread=0.5, min_scored=2)).set_index("id")
    assert out["reason"].to_dict() == {"ok": "kept", "easy": "too_easy", "hard": "too_hard", "flat": "low_spread", "broken": "unscored"}
    assert out["kept"].to_dict() == {"ok": True, "easy": False, "hard": False, "flat": False, "broken": False}
    assert out.loc["ok", "mean_score"] == 5.0
    assert out.loc["ok", "std_score"] == pytest.approx((2 / 3) ** 0.5)
    assert out.loc["broken", "n_scored"] == 1


def test_band_edges_are_inclusive():
    stats = difficulty_stats(_samples({"lo": [2.0, 4.0], "hi": [7.0, 9.0]}))
    out = apply_filter(stats, FilterConfig(low=3, high=8, min_spread=0.0))
    assert out["kept"].all()


def test_bad_band_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="low .* must not exceed high"):
        parse_params(FilterConfig, {"low": 8, "high": 3}, "filtering.rule")
