"""`kedro run`'s log is written whole, one record per line, when stdout is not a terminal."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from click.testing import CliRunner
from kedro.logging import RichHandler

from r2_write.cli import _UserErrorCommand, plain_logs_when_piped

LONG = "Running node: evaluation.ppo_outcome.generate_writingbench_responses_node: " + "x" * 150 + " END"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def rich_logger():
    """A logger with Kedro's Rich handler, as conf/logging (Kedro's default) sets up the root logger."""
    logger = logging.getLogger("r2_write.test_cli_logging")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    hook = sys.excepthook
    handler = RichHandler()
    logger.addHandler(handler)
    yield logger, handler
    for h in list(logger.handlers):
        logger.removeHandler(h)
    sys.excepthook = hook


def test_rich_wraps_at_80_columns_when_piped(rich_logger):
    """The problem: Rich's console on a pipe is 80 columns wide and wraps a long record."""
    logger, handler = rich_logger
    out = io.StringIO()
    handler.console.file = out
    logger.info(LONG)
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80 and len(out.getvalue().splitlines()) > 2


def test_piped_log_lines_are_whole(rich_logger):
    logger, _ = rich_logger
    out = io.StringIO()
    assert plain_logs_when_piped(out, logger) is True
    assert not any(isinstance(h, RichHandler) for h in logger.handlers)
    logger.info(LONG)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and LONG in lines[0] and lines[0].rstrip() == lines[0]
    assert " INFO    " in lines[0] and lines[0].endswith("[r2_write.test_cli_logging]")


def test_terminal_keeps_rich(rich_logger):
    logger, handler = rich_logger
    assert plain_logs_when_piped(_Tty(), logger) is False
    assert handler in logger.handlers and not any(type(h) is logging.StreamHandler for h in logger.handlers)


def test_the_run_command_swaps_the_root_handlers_when_piped():
    root = logging.getLogger()
    rich = RichHandler()
    hook = sys.excepthook
    root.addHandler(rich)
    seen = {}

    def callback():
        seen["handlers"] = list(root.handlers)

    try:
        result = CliRunner().invoke(_UserErrorCommand(name="run", callback=callback))  # CliRunner's stdout is a pipe
        assert result.exit_code == 0, result.output
        assert rich not in seen["handlers"] and any(type(h) is logging.StreamHandler for h in seen["handlers"])
    finally:
        for h in root.handlers[:]:
            if h is rich or (type(h) is logging.StreamHandler and h.formatter is not None
                             and "%(levelname)-7s" in h.formatter._fmt):
                root.removeHandler(h)
        sys.excepthook = hook
