"""The shape of the code: no import cycle in the installed package, no oversized module, and a
reason written beside every import made inside a function.

Read from the source with `ast` (nothing is imported), so a cycle hidden by a function-level
import is found too. The package is what pyproject.toml installs: agent/, with tools/ as
agent.tools, sessions/ as agent.sessions and grammars/ as agent.grammars.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The same mapping as [tool.setuptools] package-dir in pyproject.toml.
PACKAGE_DIRS = {"agent": "agent", "agent.tools": "tools", "agent.sessions": "sessions", "agent.grammars": "grammars"}
# Folders whose modules must stay readable: the package and the code around it.
SIZE_CHECKED_DIRS = ("agent", "tools", "sessions", "training", "bench")
MAX_LINES = 400


@dataclass(frozen=True)
class ImportSite:
    """One import statement: what it imports (resolved names) and where it stands."""

    module: str  # the importing module
    targets: tuple[str, ...]  # absolute dotted names it may refer to (modules or names in them)
    line: int
    end_line: int
    in_function: bool
    first_of_run: int  # line of the first statement in its run of consecutive imports


def package_modules() -> dict[str, Path]:
    """Every module of the installed package by its dotted name."""
    modules: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> tuple[str, ...]:
    if isinstance(node, ast.Import):
        return tuple(alias.name for alias in node.names)
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return tuple(f"{base}.{alias.name}" for alias in node.names) + (base,)


def import_sites(module: str, path: Path) -> Iterator[ImportSite]:
    """The imports of one module, outside `if TYPE_CHECKING:` blocks (those never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"

    def visit(body: list[ast.stmt], in_function: bool) -> Iterator[ImportSite]:
        run_start: int | None = None
        for statement in body:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                run_start = statement.lineno if run_start is None else run_start
                yield ImportSite(module, _resolve(statement, module, is_package), statement.lineno,
                                 statement.end_lineno or statement.lineno, in_function, run_start)
                continue
            run_start = None
            if isinstance(statement, ast.If) and _is_type_checking(statement):
                yield from visit(statement.orelse, in_function)
                continue
            inner = in_function or isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for field in ("body", "orelse", "finalbody"):
                yield from visit(getattr(statement, field, []), inner)
            for handler in getattr(statement, "handlers", []):
                yield from visit(handler.body, inner)
            for case in getattr(statement, "cases", []):
                yield from visit(case.body, inner)

    yield from visit(tree.body, False)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (a name imported from a module counts as the module)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for site in import_sites(name, path):
            for target in site.targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    return group


def comment_lines(path: Path) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return {token.start[0] for token in tokens if token.type == tokenize.COMMENT}


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph(package_modules())
    cycles = find_cycles(graph)
    for cycle in cycles:
        print("import cycle:", " -> ".join(cycle))
    assert not cycles, f"{len(cycles)} import cycle(s): " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_is_over_the_size_limit() -> None:
    too_long = []
    for folder in SIZE_CHECKED_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    for entry in too_long:
        print("over", MAX_LINES, "lines:", entry)
    assert not too_long, too_long


def test_every_function_level_import_says_why() -> None:
    """An import inside a function is there to keep start-up fast (or to break nothing else): the
    reason is a comment on its line, or on the line above its run of consecutive imports."""
    silent = []
    for name, path in package_modules().items():
        comments = comment_lines(path)
        for site in import_sites(name, path):
            if not site.in_function:
                continue
            own_lines = set(range(site.line, site.end_line + 1))
            if not (own_lines & comments or site.first_of_run - 1 in comments):
                silent.append(f"{path.relative_to(ROOT)}:{site.line}")
    for entry in silent:
        print("function-level import without a comment:", entry)
    assert not silent, silent


def test_every_package_is_in_the_wheel() -> None:
    """pyproject.toml lists the packages the wheel holds: a package folder missing there works in
    an editable install and is absent from a real one."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    listed = re.search(r"^packages\s*=\s*\[(.*?)\]", pyproject, re.MULTILINE | re.DOTALL)
    assert listed, "pyproject.toml: no `packages = [...]` in [tool.setuptools]"
    packages = set(re.findall(r'"([^"]+)"', listed.group(1)))
    folders = {name for name, path in package_modules().items() if path.name == "__init__.py"}
    assert folders <= packages, sorted(folders - packages)


def test_the_walk_sees_function_level_cycles_and_skips_type_checking(tmp_path: Path) -> None:
    """The checker itself: a cycle closed by an import inside a function is found; one closed only
    under `if TYPE_CHECKING:` is not (it never runs)."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    import a  # late\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n")
    (tmp_path / "d.py").write_text("import c\n")
    modules = {name: tmp_path / f"{name}.py" for name in "abcd"}
    graph = import_graph(modules)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": set(), "d": {"c"}}
    assert find_cycles(graph) == [["a", "b", "a"]]
    sites = list(import_sites("b", modules["b"]))
    assert [s.in_function for s in sites] == [True] and 2 in comment_lines(modules["b"])
