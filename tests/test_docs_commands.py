"""Every command quoted in README.md and docs/*.md parses, and every link between the pages resolves.

Commands are taken from ```bash / ```sh / ```shell / ```console blocks (comments dropped, ``\\``
continuations joined, ``&&`` / ``;`` / ``|`` split) and from inline code spans that start with a
known program. Each is checked by what would read it:

* ``make T``: ``T`` is a target of the Makefile;
* ``kedro ...`` / ``.venv/bin/kedro ...`` / ``python -m r2_write ...``: parsed by the project's Kedro
  CLI (``KedroCLI``: Kedro's commands, the project's, and plugins such as kedro-viz), options and
  their callbacks included; for ``kedro run`` also the names it refers to: pipelines, nodes, tags,
  namespaces, datasets of ``--load-versions``, ``--env`` folders and the top-level key of each
  ``--params`` entry;
* ``python benchmarks/X.py ...``: parsed by the script's own argparse parser (its ``main`` runs up
  to ``parse_args`` and stops there); ``python -m r2_write.<module> ...`` the same with the module;
* ``benchmarks/*.sh``: the script exists and knows every ``--option`` quoted;
* ``accelerate launch ...``: accelerate's own launch parser, the ``-m`` module importable, and the
  stage known to ``r2_write.training.launch``;
* ``mlflow ...``: MLflow's CLI; the quoted tracking URI is the one in conf/base/mlflow.yml.

A command holding a placeholder (``<stage>``, ``...``) is a template and is not parsed. Other
programs (``pip``, ``export``, ``vllm serve`` ...) are not checked.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console", "zsh"}
CHECKED = {"make", "kedro", "python", "accelerate", "mlflow", "benchmarks/gpu_smoke.sh"}


# ----------------------------------------------------------------------------- extraction


def _fenced_and_prose(text: str) -> tuple[list[tuple[str, str]], str]:
    """``[(language, body)]`` of the fenced blocks, and the text outside them."""
    blocks, prose, lang, body = [], [], None, []
    for line in text.splitlines():
        fence = re.match(r"^\s*```\s*([\w+-]*)", line)
        if fence and lang is None:
            lang, body = fence.group(1).lower() or "text", []
        elif fence:
            blocks.append((lang, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
        else:
            prose.append(line)
    return blocks, "\n".join(prose)


def _program(tokens: list[str]) -> str:
    """The program of a command, with ``.venv/bin/`` and ``python3`` normalised."""
    prog = tokens[0].removeprefix("./")
    prog = re.sub(r"^(\.venv|\$\(BIN\)|\$VENV)/bin/", "", prog)
    return "python" if re.fullmatch(r"python3?(\.\d+)?", prog) else prog


def _split(line: str) -> list[list[str]]:
    """Simple commands of one shell line: comments dropped, split at ``&&``, ``||``, ``;`` and ``|``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split, lexer.commenters = True, "#"
    commands, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    out = []
    for tokens in commands:
        while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):  # VAR=value before the program
            tokens = tokens[1:]
        if tokens:
            out.append(tokens)
    return out


def commands_of(text: str) -> list[list[str]]:
    """Every command quoted in a markdown text, as argv lists."""
    blocks, prose = _fenced_and_prose(text)
    lines = []
    for lang, body in blocks:
        if lang in SHELL_FENCES:
            lines += re.sub(r"\\\n\s*", " ", body).splitlines()
    spans = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose)
    found = [tokens for line in lines for tokens in _split(line)]
    for span in spans:
        try:
            cmds = _split(span)
        except ValueError:  # not shell (an unbalanced quote in prose code)
            continue
        found += [c for c in cmds if _program(c) in CHECKED and _is_command(c)]
    return [c for c in found if _program(c) in CHECKED]


def _is_command(tokens: list[str]) -> bool:
    """An inline span is a command, not a mention of a program (`python`, `accelerate launch`)."""
    if _program(tokens) in {"kedro", "make"}:
        return True
    return len(tokens) > (2 if _program(tokens) == "accelerate" else 1)


def is_template(tokens: list[str]) -> bool:
    return any("..." in t or re.search(r"<[\w|-]+>", t) for t in tokens)


def all_commands() -> list[tuple[str, list[str]]]:
    return [(page.relative_to(ROOT).as_posix(), c) for page in PAGES for c in commands_of(page.read_text())]


def _ids(items):
    return [f"{page}: {shlex.join(c)[:90]}" for page, c in items]


COMMANDS = all_commands()


def _of(*programs: str) -> list[tuple[str, list[str]]]:
    return [(p, c) for p, c in COMMANDS if _program(c) in programs and not is_template(c)]


# ----------------------------------------------------------------------------- the extraction itself


def test_extraction_finds_commands_in_blocks_spans_and_continuations():
    text = (
        "Run `make run` then `kedro run --pipelines sft`; `--params x` is not a command.\n\n"
        "```bash\nsource .venv/bin/activate\nkedro viz run   # lineage\nmake run && .venv/bin/kedro run \\\n"
        "    --tags filtering\nOUT=/tmp/x benchmarks/gpu_smoke.sh --dry-run\n```\n\n```\nkedro run --not-parsed\n```\n"
    )
    assert [shlex.join(c) for c in commands_of(text)] == [
        "kedro viz run", "make run", ".venv/bin/kedro run --tags filtering", "benchmarks/gpu_smoke.sh --dry-run",
        "make run", "kedro run --pipelines sft",
    ]
    assert is_template(["kedro", "run", "--pipelines", "<stage>"]) and not is_template(["kedro", "run"])


def test_every_page_is_read_and_quotes_commands():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/training.md", "docs/evaluation.md", "docs/operations.md", "docs/results.md",
            "docs/architecture.md"} <= names
    assert len(_of("make")) >= 2 and len(_of("kedro")) >= 10 and len(_of("python")) >= 5
    readme = [c for p, c in COMMANDS if p == "README.md"]
    assert ["make", "run"] in readme and ["make", "test"] in readme


# ----------------------------------------------------------------------------- make


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize(("page", "argv"), _of("make"), ids=_ids(_of("make")))
def test_make_targets_exist(page, argv):
    targets = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
    assert targets, f"{page}: `{shlex.join(argv)}` names no target"
    missing = [t for t in targets if t not in _make_targets()]
    assert not missing, f"{page}: `{shlex.join(argv)}`: no Makefile target {missing}"


# ----------------------------------------------------------------------------- kedro


@pytest.fixture(scope="module")
def kedro_cli(monkeypatch_module):
    monkeypatch_module.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    monkeypatch_module.setenv("DO_NOT_TRACK", "1")
    monkeypatch_module.chdir(ROOT)
    from kedro.framework.cli.cli import KedroCLI

    return KedroCLI(ROOT)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def project(kedro_cli):
    """Registered pipelines, node names / tags / namespaces, dataset names, and parameters per env."""
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import pipelines

    from r2_write.settings import CONFIG_LOADER_ARGS

    default = pipelines["__default__"]
    params, globals_ = {}, {}
    for env in [p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name not in ("accelerate",)]:
        loader = OmegaConfigLoader(str(ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
        params[env], globals_[env] = loader["parameters"], loader["globals"]
    return {
        "pipelines": set(pipelines),
        "nodes": {n.name for n in default.nodes},
        "tags": {t for n in default.nodes for t in n.tags},
        "namespaces": {n.namespace for n in default.nodes if n.namespace},
        "datasets": set(default.datasets()),
        "params": params,
        "globals": globals_,
    }


def parse_click(group: click.Group, prog: str, argv: list[str]) -> click.Context | None:
    """Resolve ``argv`` through ``group``'s subcommands and parse the last one's options (nothing runs).

    Returns the leaf command's context, or None for ``--help`` or a bare group.
    """
    ctx = click.Context(group, info_name=prog)
    cmd, args = group, list(argv)
    while isinstance(cmd, click.Group):
        if not args or args[0].startswith("-"):
            return None if not args or args == ["--help"] else cmd.make_context(prog, args, parent=ctx)
        name, cmd, args = cmd.resolve_command(ctx, args)
        ctx = click.Context(cmd, info_name=name, parent=ctx)
    try:
        return cmd.make_context(ctx.info_name, args, parent=ctx.parent)
    except click.exceptions.Exit as exc:  # --help
        assert exc.exit_code == 0
        return None


def _check_run(ctx: click.Context, project: dict, where: str) -> None:
    p = ctx.params
    env = p.get("env") or "local"
    assert (ROOT / "conf" / env).is_dir(), f"{where}: --env {env}: no conf/{env}"
    checks = [("pipelines", p.get("pipelines") or [], project["pipelines"]),
              ("nodes", [*p.get("from_nodes", []), *p.get("to_nodes", []), *p.get("node_names", [])], project["nodes"]),
              ("tags", p.get("tags") or [], project["tags"]),
              ("datasets of --load-versions", list(p.get("load_versions") or {}), project["datasets"])]
    for what, names, known in checks:
        unknown = sorted(set(names) - known)
        assert not unknown, f"{where}: unknown {what} {unknown}"
    for ns in p.get("namespaces") or []:
        assert any(n == ns or n.startswith(ns + ".") for n in project["namespaces"]), f"{where}: no namespace {ns!r}"
    known_keys = set(project["params"][env]) | set(project["globals"][env])
    unknown = sorted(set(p.get("params") or {}) - known_keys)
    assert not unknown, f"{where}: --params {unknown}: no such parameter in conf/base or conf/{env}"


KEDRO = _of("kedro") + [(p, ["kedro", "run", *c[3:]]) for p, c in _of("python") if c[1:3] == ["-m", "r2_write"]]


@pytest.mark.parametrize(("page", "argv"), KEDRO, ids=_ids(KEDRO))
def test_kedro_commands_parse(page, argv, kedro_cli, project):
    where = f"{page}: `{shlex.join(argv)}`"
    try:
        ctx = parse_click(kedro_cli, "kedro", argv[1:])
    except click.UsageError as exc:
        pytest.fail(f"{where}: {exc.format_message()}")
    if ctx is not None and ctx.command.name == "run" and ctx.parent and ctx.parent.info_name == "kedro":
        _check_run(ctx, project, where)


def test_the_kedro_check_rejects_what_kedro_would(kedro_cli, project):
    with pytest.raises(click.UsageError):
        parse_click(kedro_cli, "kedro", ["run", "--pipeline-typo", "sft"])
    with pytest.raises(click.UsageError):
        parse_click(kedro_cli, "kedro", ["no-such-command"])
    for argv in (["run", "--pipelines", "sfft"], ["run", "--params", "ppp.x=1"], ["run", "--env", "nowhere"],
                 ["run", "--from-nodes", "no_node"], ["run", "--load-versions", "no.dataset:2026-01-01T00.00.00.000Z"]):
        with pytest.raises(AssertionError):
            _check_run(parse_click(kedro_cli, "kedro", argv), project, "test")
    assert parse_click(kedro_cli, "kedro", ["viz", "run"]).command.name == "run"


# ----------------------------------------------------------------------------- python scripts (argparse)


class _Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


@contextlib.contextmanager
def _stop_at_parse_args(argv0: str, argv: list[str]):
    """Make the first top-level argparse parse raise ``_Parsed`` (subparsers still parse as usual)."""
    orig_parse_args, orig_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    depth = [0]

    def parse_args(self, args=None, namespace=None):
        depth[0] += 1
        try:
            ns = orig_parse_args(self, args, namespace)
        finally:
            depth[0] -= 1
        if depth[0] == 0:
            raise _Parsed(ns)
        return ns

    def parse_known_args(self, args=None, namespace=None):
        if depth[0]:  # inside parse_args, or a subparser
            return orig_known(self, args, namespace)
        depth[0] += 1
        try:
            result = orig_known(self, args, namespace)
        finally:
            depth[0] -= 1
        raise _Parsed(result[0])

    saved = sys.argv
    sys.argv = [argv0, *argv]
    argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse_args, parse_known_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = orig_parse_args, orig_known
        sys.argv = saved


def parse_script(main, argv0: str, argv: list[str]) -> argparse.Namespace | None:
    """``main()`` run up to its argument parsing: the namespace, or None for ``--help``; a bad option fails."""
    with _stop_at_parse_args(argv0, argv):
        try:
            main()
        except _Parsed as parsed:
            return parsed.namespace
        except SystemExit as exc:
            if exc.code in (0, None):
                return None
            pytest.fail(f"`{argv0} {shlex.join(argv)}`: argparse refused it (exit {exc.code})")
    pytest.fail(f"`{argv0}`: main() returned without parsing its arguments with argparse")


def _load_script(path: Path):
    name = f"_docs_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _parses_with_argparse(path: Path) -> bool:
    """The script's ``main`` builds an argparse parser (so it can be stopped right after parsing)."""
    text = path.read_text()
    return "argparse" in text and re.search(r"^def main\(", text, re.M) is not None


SCRIPTS = [(p, c) for p, c in _of("python") if len(c) > 1 and c[1].endswith(".py")]
MODULES = [(p, c) for p, c in _of("python") if c[1:2] == ["-m"] and c[2].startswith("r2_write.")]


@pytest.mark.parametrize(("page", "argv"), SCRIPTS, ids=_ids(SCRIPTS))
def test_python_scripts_parse_their_options(page, argv):
    path = ROOT / argv[1]
    assert path.is_file(), f"{page}: `{shlex.join(argv)}`: no file {argv[1]}"
    if _parses_with_argparse(path):  # else (e.g. a Hydra entry point) only its existence is checked: main() would run it
        parse_script(_load_script(path).main, argv[1], argv[2:])


@pytest.mark.parametrize(("page", "argv"), MODULES, ids=_ids(MODULES))
def test_python_modules_parse_their_options(page, argv):
    spec = importlib.util.find_spec(argv[2])
    assert spec is not None and spec.origin, f"{page}: `{shlex.join(argv)}`: no module {argv[2]}"
    if not _parses_with_argparse(Path(spec.origin)):
        return  # e.g. a Hydra entry point: calling main() would run it; its existence is what can be checked
    module = importlib.import_module(argv[2])
    assert hasattr(module, "main"), f"{page}: `{shlex.join(argv)}`: {argv[2]} has no main()"
    parse_script(module.main, f"python -m {argv[2]}", argv[3:])


def test_the_script_check_rejects_an_unknown_option():
    from tests.benchmarks._load import BENCHMARKS

    main = _load_script(BENCHMARKS / "memory_table.py").main
    assert parse_script(main, "memory_table.py", ["--gpus", "16"]).gpus == 16
    with pytest.raises(pytest.fail.Exception, match="argparse refused"):
        parse_script(main, "memory_table.py", ["--gpu", "x"])
    with pytest.raises(pytest.fail.Exception, match="argparse refused"):
        parse_script(main, "memory_table.py", ["--no-such-option"])


def test_documented_learning_signal_runs_share_the_default_budget():
    """The learning-signal tables of docs/results.md compare runs with one budget (6 steps of 8 rollouts)."""
    runs = [c for page, c in SCRIPTS if page == "docs/results.md" and c[1] == "benchmarks/learning_signal.py"
            and "--tiny" not in c and "--reflect-share" not in c]
    assert len(runs) >= 3  # the default run, --seed 1, --critic separate
    bench = _load_script(ROOT / "benchmarks" / "learning_signal.py")
    for argv in runs:
        args = bench.parse_args(argv[2:])  # the script's parse_args: argparse, then its derived defaults
        assert args.steps == 6 and args.batch == 8, shlex.join(argv)
    separate = [c for c in runs if "separate" in c]
    assert separate and bench.parse_args(separate[0][2:]).variants == ["ppo", "ppo_outcome"]


# ----------------------------------------------------------------------------- shell scripts, accelerate, mlflow


SHELL_SCRIPTS = _of("benchmarks/gpu_smoke.sh")


@pytest.mark.parametrize(("page", "argv"), SHELL_SCRIPTS, ids=_ids(SHELL_SCRIPTS))
def test_shell_scripts_exist_and_know_their_options(page, argv):
    path = ROOT / argv[0].removeprefix("./")
    assert path.is_file(), f"{page}: no {argv[0]}"
    text = path.read_text()
    unknown = [a for a in argv[1:] if a.startswith("--") and a.split("=")[0] not in text]
    assert not unknown, f"{page}: `{shlex.join(argv)}`: {argv[0]} does not handle {unknown}"


ACCELERATE = _of("accelerate")


@pytest.mark.parametrize(("page", "argv"), ACCELERATE, ids=_ids(ACCELERATE))
def test_accelerate_launch_commands_parse(page, argv):
    from accelerate.commands.launch import launch_command_parser

    assert argv[1] == "launch", f"{page}: `{shlex.join(argv)}`"
    try:
        args = launch_command_parser().parse_args(argv[2:])
    except SystemExit as exc:
        pytest.fail(f"{page}: `{shlex.join(argv)}`: accelerate refused it (exit {exc.code})")
    if args.config_file:
        assert (ROOT / args.config_file).is_file(), f"{page}: no {args.config_file}"
    if args.module:
        assert importlib.util.find_spec(args.training_script), f"{page}: no module {args.training_script}"
    if args.training_script == "r2_write.training.launch":
        from r2_write.training.launch import STAGES

        assert len(args.training_script_args) == 2 and args.training_script_args[0] in STAGES, shlex.join(argv)


MLFLOW = _of("mlflow")


@pytest.mark.parametrize(("page", "argv"), MLFLOW, ids=_ids(MLFLOW))
def test_mlflow_commands_parse_and_point_at_the_project_store(page, argv):
    from mlflow.cli import cli

    try:
        ctx = parse_click(cli, "mlflow", argv[1:])
    except click.UsageError as exc:
        pytest.fail(f"{page}: `{shlex.join(argv)}`: {exc.format_message()}")
    uri = ctx.params.get("backend_store_uri") if ctx is not None else None
    if uri:
        configured = yaml.safe_load((ROOT / "conf" / "base" / "mlflow.yml").read_text())["server"]["mlflow_tracking_uri"]
        assert uri == configured, f"{page}: `{shlex.join(argv)}` reads {uri}, the project writes {configured}"


# ----------------------------------------------------------------------------- links


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    _, prose = _fenced_and_prose(text)
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", prose, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        out.add(slug)
    return out


def _links(page: Path) -> list[tuple[str, str]]:
    _, prose = _fenced_and_prose(page.read_text())
    return [(t, a) for t, a in re.findall(r"\]\(([^)\s#]*)(?:#([^)\s]*))?\)", prose) if not re.match(r"\w+://", t)]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_links_between_pages_resolve(page):
    broken = []
    for target, anchor in _links(page):
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text()):
            broken.append(f"{target}#{anchor} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_every_docs_page_is_linked_from_the_readme_or_another_page():
    linked = {(ROOT / t).resolve() for t, _ in _links(ROOT / "README.md") if t}
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked
                and not any(p.resolve() in {(q.parent / t).resolve() for t, _ in _links(q) if t}
                            for q in PAGES if q.parent == ROOT / "docs" and q != p)]
    assert not unlinked, f"docs pages reachable from no page: {unlinked}"


# ----------------------------------------------------------------------------- paths


PATH_ROOTS = ("src/", "tests/", "benchmarks/", "conf/", "notebooks/", "docs/")


def _quoted_paths(page: Path) -> list[str]:
    """Repository paths quoted in inline code (``src/r2_write/rl/ppo.py``); templates, globs and the
    user's own ``conf/local/`` files are left out."""
    _, prose = _fenced_and_prose(page.read_text())
    out = []
    for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose):
        path = span.split("::")[0].split(":")[0].strip()
        if path.startswith(PATH_ROOTS) and not path.startswith("conf/local/") and " " not in path and not re.search(r"[<>*{}\[\]]|\.\.\.", path):
            out.append(path)
    return out


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_quoted_repository_paths_exist(page):
    missing = sorted({p for p in _quoted_paths(page) if not (ROOT / p).exists()})
    assert not missing, f"{page.relative_to(ROOT)} quotes paths that do not exist: {missing}"


# ----------------------------------------------------------------------------- the README's package map


def _package_map() -> tuple[set[str], set[str]]:
    """The README's package map: the packages of its first column, the modules of its ``*.py`` row."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Package map"):]
    section = section[: section.index("\n## ", 1)]
    packages, modules = set(), set()
    for row in re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, re.M):
        if row[0] == "*.py":
            modules |= set(re.findall(r"`(\w+\.py)`", row[1]))
        else:
            packages.add(row[0])
    return packages, modules


def test_the_package_map_names_every_package_and_module():
    src = ROOT / "src" / "r2_write"
    listed_packages, listed_modules = _package_map()
    packages = {f"{p.name}/" for p in src.iterdir() if (p / "__init__.py").exists()}
    modules = {p.name for p in src.glob("*.py")} - {"__init__.py", "__main__.py"}
    assert listed_packages == packages, f"README.md's package map: missing {sorted(packages - listed_packages)}, " \
                                        f"not in src/r2_write/ {sorted(listed_packages - packages)}"
    assert listed_modules == modules, f"README.md's package map (*.py): missing {sorted(modules - listed_modules)}, " \
                                      f"not in src/r2_write/ {sorted(listed_modules - modules)}"
