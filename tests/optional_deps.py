"""Optional dependencies in tests: skip where a dependency is truly optional, fail where it is promised.

A test that needs a package declared in pyproject's ``test`` extra must not skip when it is
missing: ``make test`` installs that extra, so a missing package there is a broken install,
and a skip would hide it. :func:`require` skips only for packages outside the extra.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``transformers[serving]>=5`` -> ``transformers``)."""
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def extra_names(extra: str = "test") -> set[str]:
    """Distribution names declared in ``[project.optional-dependencies].<extra>``, with ``name[feature]`` kept too."""
    reqs = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"].get(extra, [])
    names = set()
    for req in reqs:
        names.add(_name(req))
        extras = re.match(r"\s*[\w.-]+\[([^\]]+)\]", req)
        names.update(f"{_name(req)}[{e.strip()}]" for e in (extras.group(1).split(",") if extras else []))
    return names


def require(available: bool, package: str, message: str) -> None:
    """Skip when ``package`` is missing and optional; fail when the ``test`` extra declares it.

    Args:
        available: Whether the dependency was found.
        package: Its requirement name as pyproject writes it (``transformers[serving]``, ``vllm``).
        message: What is missing and how to install it.
    """
    if available:
        return
    if package.lower() in extra_names():
        pytest.fail(f"{message} ({package} is in the test extra: `make install-test` should have installed it)")
    pytest.skip(message)
