"""The package's shape: no import cycles, a cheap ``import unroll``, small recipe files, and
``python -m unroll``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "unroll"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The unroll modules `path` imports, anywhere in the file (a lazy import inside a function
    is still an edge: it only hides a cycle), except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "unroll":
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base.split(".")[0] != "unroll":
                return
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: _imports(p, set(files)) for m, p in files.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (cycle := dfs(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := dfs(m)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = _find_cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


# Lower layers never import higher ones: nn -> models -> engine -> recipes -> cli.
LAYERS = ["unroll.nn", "unroll.models", "unroll.engine", "unroll.recipes", "unroll.cli"]


def test_imports_run_one_way():
    graph = _graph()
    rank = {layer: i for i, layer in enumerate(LAYERS)}

    def layer_of(m: str) -> int | None:
        for layer, i in rank.items():
            if m == layer or m.startswith(layer + "."):
                return i
        return None

    wrong = [
        f"{m} imports {n}"
        for m, deps in graph.items()
        for n in deps
        if layer_of(m) is not None and layer_of(n) is not None and layer_of(n) > layer_of(m)
    ]
    assert not wrong, wrong


def test_import_unroll_is_cheap():
    code = (
        "import sys, torch; before = set(sys.modules); import unroll; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    heavy = [
        m
        for m in out
        if m.startswith(("unroll.recipes", "unroll.cli", "unroll.engine", "matplotlib"))
        or m in ("argparse", "tensorboard", "sklearn", "statsmodels", "pandas")
    ]
    assert not heavy, heavy
    # ... and the recipes are there on first use
    code = "import unroll; print(unroll.lm.train.__module__, unroll.sincos.RECIPE.name)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert out == ["unroll.recipes.lm.train", "sincos"]


def test_python_dash_m_unroll():
    out = subprocess.run(
        [sys.executable, "-m", "unroll", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0
    for recipe in ("lm", "classify", "forecast", "sincos"):
        assert recipe in out.stdout


@pytest.mark.parametrize("path", sorted((PACKAGE / "recipes").rglob("*.py")), ids=lambda p: p.name)
def test_recipe_files_are_small_and_parse_no_arguments(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 400, f"{path}: {len(text.splitlines())} lines"
    assert "argparse" not in text, f"{path} parses arguments: that is the CLI's job"


def test_typed_package():
    assert (PACKAGE / "py.typed").is_file()
