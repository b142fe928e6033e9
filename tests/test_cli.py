"""The project's ``kedro run``: Kedro's command, with user mistakes reported in one line."""

import click
from click.testing import CliRunner
from kedro.framework.cli.project import run as kedro_run
from kedro.io import DatasetError

from r2_write.cli import _UserErrorCommand, cli, user_error
from r2_write.config import ConfigError
from r2_write.data_io import InputDataError


def _wrapped(exc: Exception) -> Exception:
    """``exc`` as Kedro re-raises it from a dataset load: a DatasetError caused by it."""
    try:
        try:
            raise exc
        except Exception as inner:
            raise DatasetError("Failed while loading data from dataset raw_prompts") from inner
    except DatasetError as outer:
        return outer


def test_user_error_is_found_through_kedro_wrapping():
    bad_row = InputDataError("prompts.jsonl line 3, field 'prompt': expected a string, got integer")
    assert user_error(_wrapped(bad_row)) is bad_row
    assert user_error(ConfigError("x")) is not None
    assert user_error(_wrapped(KeyError("bug"))) is None


def _command(exc: Exception) -> click.Command:
    def callback():
        raise exc
    return _UserErrorCommand(name="run", callback=callback)


def test_a_user_mistake_prints_one_message_and_exits_1():
    result = CliRunner().invoke(_command(_wrapped(InputDataError("prompts.jsonl line 3, field 'prompt': bad"))))
    assert result.exit_code == 1
    assert result.output.strip() == "Error: InputDataError: prompts.jsonl line 3, field 'prompt': bad"
    assert "Traceback" not in result.output


def test_a_bug_keeps_its_exception():
    result = CliRunner().invoke(_command(RuntimeError("a bug")))
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


def test_run_keeps_every_kedro_option():
    ours = cli.commands["run"]
    assert [p.name for p in ours.params] == [p.name for p in kedro_run.params]
    assert ours.callback is kedro_run.callback

