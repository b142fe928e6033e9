"""r2_write.rewards.spec: the reward as data, one builder wherever the training runs."""

from __future__ import annotations

import pytest

from r2_write.rewards.spec import build_reward, reward_spec


def factory_with_cfg(x, reward_cfg=None):
    return (lambda: (x, reward_cfg)), "judge"


def factory_without_cfg(x):
    return lambda: x


def test_build_reward_passes_the_reward_settings_only_to_factories_that_take_them():
    fn, judge = build_reward({"function": f"{__name__}:factory_with_cfg", "kwargs": {"x": 3}}, reward_cfg="cfg")
    assert fn() == (3, "cfg") and judge == "judge"
    fn, judge = build_reward({"function": f"{__name__}:factory_without_cfg", "kwargs": {"x": 4}}, reward_cfg="cfg")
    assert fn() == 4 and judge is None


def test_reward_spec_names_the_one_builder_and_rejects_an_unknown_kind():
    spec = reward_spec({"judge": {}}, {}, [], kind="outcome")
    assert spec["function"] == "r2_write.rewards.spec:judge_reward" and spec["kwargs"]["kind"] == "outcome"
    with pytest.raises(ValueError, match="unknown reward kind 'sequence'"):
        reward_spec({}, {}, [], kind="sequence")
