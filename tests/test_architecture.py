"""The import structure: no package cycle between rl/ and training/, no module cycle anywhere.

Every import counts, function-level ones too: a lazy import still ties two modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "r2_write"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> r2_write modules it imports`` (a ``from pkg import name`` naming a submodule counts as it)."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "r2_write":
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "r2_write"]
            graph[module] |= {t for t in targets if t in modules and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edges(graph: dict[str, set[str]], a: str, b: str) -> list[tuple[str, str]]:
    return [(m, t) for m, ts in graph.items() for t in ts if m.startswith(f"r2_write.{a}.") and t.startswith(f"r2_write.{b}.")]


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_rl_and_training_do_not_import_each_other_both_ways():
    graph = import_graph()
    rl_to_training, training_to_rl = _package_edges(graph, "rl", "training"), _package_edges(graph, "training", "rl")
    assert not (rl_to_training and training_to_rl), (rl_to_training, training_to_rl)
    assert not rl_to_training, f"rl/ is the lower layer (training/ launches it): {rl_to_training}"


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_checkpoint_helpers_have_one_home():
    graph = import_graph()
    assert "r2_write.training.checkpoints" not in graph
    users = {m for m, ts in graph.items() if "r2_write.runs" in ts}
    assert {"r2_write.rl.trainer", "r2_write.training.reuse", "r2_write.training.stage"} <= users


def _files_matching(pattern: str) -> set[str]:
    import re

    regex = re.compile(pattern)
    return {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if regex.search(p.read_text())}


def test_one_home_each_for_the_reward_builder_the_run_identity_and_the_model_loader():
    assert _files_matching(r"spec\[\"function\"\]") == {"rewards/spec.py"}  # a reward built from its judge spec
    assert _files_matching(r"def (run_key|training_key|run_dir)\(") == {"runs.py"}  # one hash for resume and reuse
    # tokenizers and models load in llm/loading.py; llm/embedded.py converts the GGUF file once (make model)
    assert _files_matching(r"Auto(Tokenizer|Model\w*)\.from_pretrained") == {"llm/loading.py", "llm/embedded.py"}
