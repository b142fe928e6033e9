"""Project commands: Kedro's own ``kedro run``, reporting mistakes in one line.

Kedro loads ``<package>.cli`` and lets its commands override the built-in ones. ``run``
here is Kedro's ``run`` (same options, same behaviour) except for one thing: when the run
stops on a mistake the user can fix (a bad parameter, a malformed input row, overlapping
train and evaluation sets, a missing API key or an unreachable endpoint), it prints that
mistake's message and exits with status 1, instead of a traceback from deep inside.
Any other exception keeps its full traceback. Started in several processes (``torchrun``,
``accelerate launch -m r2_write``) it stops at once: the training stages launch their own
processes (:mod:`r2_write.training.launch`).
"""

from __future__ import annotations

import click
from kedro.framework.cli.project import run as kedro_run

from r2_write.config import ConfigError
from r2_write.data_io import DataOverlapError, InputDataError
from r2_write.llm.base import LLMError
from r2_write.training.launch import refuse_multiprocess_kedro

USER_ERRORS = (ConfigError, InputDataError, DataOverlapError, LLMError)


def user_error(exc: BaseException) -> BaseException | None:
    """The first user-fixable error in ``exc``'s cause/context chain (Kedro wraps dataset errors)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, USER_ERRORS):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class _UserErrorCommand(click.Command):
    def invoke(self, ctx: click.Context):
        try:
            refuse_multiprocess_kedro()  # torchrun / accelerate launch of the whole run: one message, exit 1
            return super().invoke(ctx)
        except Exception as exc:
            found = user_error(exc)
            if found is None:
                raise
            raise click.ClickException(f"{type(found).__name__}: {found}") from None


@click.group(name="r2_write")
def cli() -> None:
    """r2-write project commands."""


# a module attribute too: ``python -m r2_write`` (and ``accelerate launch -m r2_write``) runs
# ``<package>.cli.run`` through Kedro's ``find_run_command``.
run = _UserErrorCommand(
    name="run", params=kedro_run.params, callback=kedro_run.callback, help=kedro_run.help,
    context_settings=kedro_run.context_settings,
)
cli.add_command(run)
