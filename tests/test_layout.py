"""The package's layout: no import circles in mimecast_exporter/, the HTTP side in one package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "mimecast_exporter"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The exporter modules ``path`` imports when it runs, at the top or inside
    functions alike."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {  # "if TYPE_CHECKING:" imports are for the type checker, never run
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from mimecast_exporter.web import openssl" imports the submodule openssl.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "mimecast_exporter":  # the root package holds only __version__
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, modules) - {name} for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles_in_the_package():
    # Package __init__ modules that only document are no edge to their children.
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_demo_never_imports_the_cli():
    assert "mimecast_exporter.cli" not in _graph()["mimecast_exporter.demo"]


def test_the_http_side_is_one_package():
    web = {p.name for p in (PACKAGE / "web").glob("*.py")}
    assert {
        "server.py",
        "landing.py",
        "config.py",
        "tls.py",
        "auth.py",
        "watch.py",
        "listen.py",
    } <= web
    flat = {p.name for p in PACKAGE.glob("*.py")}
    for old in ("web.py", "webwatch.py", "webconfig.py", "webtls.py", "webauth.py"):
        assert old not in flat
    for old in ("landing.py", "listen.py"):
        assert old not in flat
