"""The reward and trajectory docstrings are executable: the value table is computed, not typed."""

import doctest

import pytest

import r2_write.rewards.process
import r2_write.trajectory


@pytest.mark.parametrize("module", [r2_write.rewards.process, r2_write.trajectory])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
