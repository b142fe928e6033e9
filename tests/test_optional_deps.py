"""A test skips for a missing dependency only when ``make test`` does not promise it (pyproject's test extra)."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest

from tests.optional_deps import extra_names, require

TESTS = Path(__file__).resolve().parent


def test_the_test_extra_is_read_from_pyproject():
    names = extra_names()
    assert {"pytest", "pytest-xdist", "transformers", "transformers[serving]", "nbclient"} <= names
    assert "vllm" not in names and "verl" not in names  # optional: their tests may skip


def test_require_fails_for_a_declared_package_and_skips_for_an_optional_one():
    require(True, "transformers[serving]", "present")  # nothing happens
    with pytest.raises(pytest.fail.Exception, match="in the test extra"):
        require(False, "transformers[serving]", "the `transformers` CLI is missing")
    with pytest.raises(pytest.skip.Exception, match="vLLM is missing"):
        require(False, "vllm", "vLLM is missing")


def _importorskips(root: Path) -> list[tuple[str, str]]:
    """``(file, module)`` of every ``pytest.importorskip("module")`` under ``root``."""
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found.append((str(path.relative_to(root)), node.args[0].value))
    return found


def _offending(root: Path) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    declared = extra_names()
    offending = []
    for file, module in _importorskips(root):
        top = module.split(".")[0]
        names = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
        offending += [f"{file}: importorskip({module!r}) but {n} is in the test extra (use tests.optional_deps.require)"
                      for n in sorted(names & declared)]
    return offending


def test_the_scan_finds_an_importorskip_of_a_declared_package(tmp_path):
    (tmp_path / "test_x.py").write_text('import pytest\nnb = pytest.importorskip("nbformat")\nv = pytest.importorskip("vllm")\n')
    assert _offending(tmp_path) == ["test_x.py: importorskip('nbformat') but nbformat is in the test extra "
                                    "(use tests.optional_deps.require)"]


def test_no_importorskip_of_a_package_the_test_extra_installs():
    offending = _offending(TESTS)
    assert not offending, "\n".join(offending)
