"""Project commands: Kedro's own ``kedro run``, reporting mistakes in one line.

Kedro loads ``<package>.cli`` and lets its commands override the built-in ones. ``run``
here is Kedro's ``run`` (same options, same behaviour) except for one thing: when the run
stops on a mistake the user can fix (a bad parameter, a malformed input row, overlapping
train and evaluation sets, a missing API key or an unreachable endpoint), it prints that
mistake's message and exits with status 1, instead of a traceback from deep inside.
Any other exception keeps its full traceback. Started in several processes (``torchrun``,
``accelerate launch -m r2_write``) it stops at once: the training stages launch their own
processes (:mod:`r2_write.training.launch`). When stdout is not a terminal (``kedro run > run.log``,
CI) the log lines are written whole, one per line, instead of Rich's table wrapped at 80 columns
(:func:`plain_logs_when_piped`).

``clean-models`` (``kedro clean-models``, ``make clean-models``) applies the model retention of
``docs/disk.md`` to every stage at once and reports the space it frees.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

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


PLAIN_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s [%(name)s]"


def plain_logs_when_piped(stream=None, logger: logging.Logger | None = None) -> bool:
    """Replace Rich log handlers by plain one-line handlers when ``stream`` is not a terminal.

    Kedro's default logging draws each record as a Rich table as wide as the console, and a
    console that is not a terminal is 80 columns wide: ``kedro run > run.log`` wraps every long
    line (node names, paths, messages) over several lines, padded with spaces. A plain
    ``StreamHandler`` writes each record whole on one line. On a terminal nothing changes.

    Args:
        stream: Where the log goes (default ``sys.stdout``, where Kedro's Rich console writes).
        logger: The logger whose handlers are swapped (default: the root logger).

    Returns:
        Whether any handler was replaced.
    """
    import rich.logging

    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return False
    logger = logger if logger is not None else logging.getLogger()
    swapped = False
    for handler in list(logger.handlers):
        if isinstance(handler, rich.logging.RichHandler):
            plain = logging.StreamHandler(stream)
            plain.setLevel(handler.level)
            plain.setFormatter(logging.Formatter(PLAIN_LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
            for f in handler.filters:
                plain.addFilter(f)
            logger.removeHandler(handler)
            logger.addHandler(plain)
            swapped = True
    if swapped and sys.excepthook is not sys.__excepthook__:
        sys.excepthook = sys.__excepthook__  # Rich's traceback hook wraps at 80 columns too
    return swapped


class _UserErrorCommand(click.Command):
    def invoke(self, ctx: click.Context):
        plain_logs_when_piped()
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


@cli.command(name="clean-models")
@click.option("--keep-versions", type=click.IntRange(min=1), default=None,
              help="Catalog versions kept per stage (default: the catalog's keep_versions, else 2).")
@click.option("--keep-trained", type=click.IntRange(min=1), default=None,
              help="Finished trainings kept per stage in data/06_models/trained (default: the catalog's keep_trained, else 2).")
@click.option("--dry-run", is_flag=True, help="Report what would be freed; delete nothing.")
@click.option("--models-root", type=click.Path(file_okay=False, path_type=Path), default=Path("data/06_models"),
              show_default=True, help="The models folder of the project.")
def clean_models_command(keep_versions: int | None, keep_trained: int | None, dry_run: bool, models_root: Path) -> None:
    """Apply the model retention to every stage now and report the disk used and freed."""
    from r2_write.catalog.model_directory import clean_models, format_bytes

    defaults = _catalog_retention()
    keep_versions = keep_versions or defaults.get("keep_versions") or 2
    keep_trained = keep_trained or defaults.get("keep_trained") or 2
    if not models_root.is_dir():
        raise click.ClickException(f"no models folder at {models_root}")
    report = clean_models(models_root, keep_versions, keep_trained, dry_run=dry_run)
    click.echo(f"models in {models_root}: keep {keep_versions} catalog version(s) and {keep_trained} finished "
               f"training(s) per stage{' (dry run)' if dry_run else ''}")
    for path in report["deleted"]:
        click.echo(f"  {'would delete' if dry_run else 'deleted'} {path}")
    for u in report["stages"]:
        click.echo(f"  {u.stage}: {u.versions} version(s), {u.trained} stored training(s), {format_bytes(u.bytes)}")
    verb = "would free" if dry_run else "freed"
    click.echo(f"{format_bytes(report['before'])} before, {format_bytes(report['after'])} after: {verb} "
               f"{format_bytes(report['freed'])}")


def _catalog_retention() -> dict:
    """``keep_versions`` / ``keep_trained`` of the catalog's model factory (conf/base, then conf/local), if any."""
    import yaml

    found: dict = {}
    for env in ("base", "local"):
        for path in sorted(Path("conf", env).glob("catalog*.yml")):
            entries = yaml.safe_load(path.read_text()) or {}
            for name, entry in entries.items():
                if isinstance(entry, dict) and str(entry.get("type", "")).endswith("ModelDirectoryDataset") and entry.get("versioned"):
                    found.update({k: entry[k] for k in ("keep_versions", "keep_trained") if k in entry})
    return found
