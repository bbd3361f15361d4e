"""The import graph of ``bot/`` has no cycles, and the channel modules stay small.

The graph is built from the source with :mod:`ast`, without importing anything: every
``import`` / ``from ... import`` of a ``bot.*`` module counts, at module level, inside
functions and methods, and under ``if TYPE_CHECKING:`` alike. A function-level import is
still a dependency (it only runs later), and a type-only one still ties the two modules'
designs together, so hiding an import in a function or behind ``TYPE_CHECKING`` does not
break a cycle here: the shared piece has to move down into a lower module (a protocol,
a small helper module, or an event on the live bus in ``bot/live.py``).

Size limit: no module under ``bot/channels/`` or ``bot/agent_console/`` may exceed
:data:`MAX_LINES` lines. The widget channel (1350 lines) and the agent console channel
(1204) were split into modules of one job each (docs/widget.md and docs/agent-console.md,
"Module map"); the largest module there now is ``bot/channels/hub.py`` (about 510 lines,
one job: connections, limits and fan-out), and the split modules are all well under 350.
600 is the size of a module that still does one job and can be read in one sitting, and
leaves the biggest one some room to grow; a module that needs more is doing two jobs.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "bot"
MAX_LINES = 600
SIZE_LIMITED = ("channels", "agent_console")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(path): path for path in sorted(BOT.rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names an import statement may refer to (modules or names in them)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        yield target
        for alias in node.names:
            yield f"{target}.{alias.name}"


def _resolve(name: str, modules: Dict[str, Path]) -> Optional[str]:
    """The longest prefix of ``name`` that is a module of ``bot``."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph() -> Dict[str, Dict[str, int]]:
    """``{module: {imported bot module: line of the first such import}}``."""
    modules = _modules()
    graph: Dict[str, Dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):  # every level: module, functions, TYPE_CHECKING blocks
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _imported(node, name, path.name == "__init__.py"):
                if not target.startswith("bot"):
                    continue
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    graph[name].setdefault(resolved, node.lineno)
    return graph


def strongly_connected(graph: Dict[str, Dict[str, int]]) -> List[List[str]]:
    """The components with more than one module (Tarjan's algorithm, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def _describe(component: List[str], graph: Dict[str, Dict[str, int]]) -> str:
    members = set(component)
    edges = [f"    {a} -> {b} (line {line} of {a})"
             for a in component for b, line in sorted(graph[a].items()) if b in members]
    return " <-> ".join(component) + "\n" + "\n".join(edges)


def test_the_checker_finds_a_cycle() -> None:
    graph = {"bot.a": {"bot.b": 1}, "bot.b": {"bot.c": 3}, "bot.c": {"bot.a": 7},
             "bot.d": {"bot.a": 2}}
    assert strongly_connected(graph) == [["bot.a", "bot.b", "bot.c"]]
    assert strongly_connected({"bot.a": {"bot.b": 1}, "bot.b": {}}) == []


def test_the_graph_sees_function_level_and_type_checking_imports() -> None:
    graph = import_graph()
    assert "bot.channels.widget" in graph and "bot.support.chat" in graph
    # function-level (inside a method): the widget channel reads its settings lazily
    assert "bot.settings" in graph["bot.channels.widget"]
    # relative and package imports resolve to modules
    assert "bot.support.ops" in graph["bot.support"]


def test_bot_has_no_import_cycles() -> None:
    graph = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles in bot/ (move the shared piece into a lower module):\n" \
        + "\n".join(_describe(component, graph) for component in cycles)


def test_channel_modules_do_one_job_each() -> None:
    too_big = []
    for package in SIZE_LIMITED:
        for path in sorted((BOT / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                too_big.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not too_big, f"modules over {MAX_LINES} lines (split them by job): {too_big}"


def test_credentials_name_importable_channels() -> None:
    """The dotted paths in credentials.yml still name the channel classes."""
    import importlib

    import yaml

    credentials = yaml.safe_load((ROOT / "credentials.yml").read_text(encoding="utf-8"))
    for dotted in credentials:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), dotted
