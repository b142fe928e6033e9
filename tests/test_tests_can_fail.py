"""Every test can fail: it asserts, expects an exception, or fails explicitly.

A test that only calls code passes as long as nothing raises, whatever the code returns; such
tests must say what they check. A test that relies on a callee raising is listed in ``RAISES_INSIDE``
with the reason, next to the test showing that the callee does raise.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CHECKS = ("assert", "raises", "fail(", "warns")  # assert also covers torch.testing.assert_close, np.testing.assert_*

RAISES_INSIDE = {  # tests whose check is a callee that raises
    # veRL's validate_config raises AssertionError on a bad batch layout;
    # test_veRLs_batch_check_catches_a_batch_smaller_than_the_gpus shows it does
    "rl/verl/test_overrides.py::test_a_small_row_count_run_passes_veRLs_batch_checks",
}


def unchecked_tests(root: Path) -> list[str]:
    """``file::test`` of every test function under ``root`` whose body holds no check."""
    found = []
    for path in sorted(root.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        scopes = [tree] + [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Test")]
        for scope in scopes:
            for node in scope.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                    body = ast.unparse(node)
                    if not any(c in body for c in CHECKS):
                        found.append(f"{path.relative_to(root).as_posix()}::{node.name}")
    return found


def test_the_scan_finds_a_test_that_only_calls(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "def test_calls():\n    sorted([2, 1])\n\n"
        "def test_asserts():\n    assert sorted([2, 1]) == [1, 2]\n\n"
        "class TestY:\n    def test_method_calls(self):\n        len([])\n"
    )
    assert unchecked_tests(tmp_path) == ["test_x.py::test_calls", "test_x.py::test_method_calls"]


def test_every_test_checks_something():
    unchecked = sorted(set(unchecked_tests(TESTS)) - RAISES_INSIDE)
    assert not unchecked, "tests that cannot fail unless something raises: " + ", ".join(unchecked)
