"""The tool registry: the tools a turn may call, by name, from built-ins, entry points and files.

The turn grammar (`agent.grammar.protocol`) is built from this registry, so only registered names
with well-typed arguments can ever be generated. What one tool is (`@tool`, ToolSpec) lives in
`agent.tooling.spec`; the built-in tools (`agent.tools`) import `@tool` from `agent.tooling`
exactly as a user's tools do, so importing them here makes no cycle.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from agent.tooling.spec import ToolError, ToolSpec, make_spec, spec_of
from agent.tools import calc, load, note, search

ENTRY_POINT_GROUP = "agent.tools"


class ToolRegistry:
    """Registered tools by name, iterated in registration order."""

    def __init__(self, specs: list[ToolSpec] | None = None) -> None:
        self._tools: dict[str, ToolSpec] = {}
        for spec in specs or []:
            self.register(spec)

    def register(self, item: ToolSpec | Callable[..., Any], *, replace: bool = False) -> ToolSpec:
        """Add a ToolSpec or an `@tool` function (a plain function is wrapped with defaults)."""
        spec = item if isinstance(item, ToolSpec) else (spec_of(item) or make_spec(item))
        if spec.name in self._tools and not replace:
            other = self._tools[spec.name].source or "an earlier registration"
            raise ToolError(f"tool {spec.name!r} is already registered (from {other}); rename one of them")
        self._tools[spec.name] = spec
        return spec

    def get(self, name: str) -> ToolSpec:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(self._tools) or "none"
            raise KeyError(f"unknown tool {name!r}; registered tools: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return list(self._tools)

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def copy(self) -> ToolRegistry:
        return ToolRegistry(list(self._tools.values()))

    def load_module(self, module: types.ModuleType, source: str = "", replace: bool = False,
                    own_only: bool = True) -> list[ToolSpec]:
        """Register every `@tool` function of a module (in definition order).

        With own_only, tools merely imported into the module (e.g. a built-in) are skipped,
        so a user file that imports `calc` does not register it twice.
        """
        found: list[ToolSpec] = []
        for value in list(vars(module).values()):
            spec = spec_of(value)
            if spec is None or (own_only and value.__module__ != module.__name__):
                continue
            if spec not in found:
                if source:
                    spec.source = source
                found.append(spec)
        for spec in found:
            self.register(spec, replace=replace)
        return found

    def load_file(self, path: str | Path, replace: bool = False) -> list[ToolSpec]:
        """Import a Python file (`--tools x.py`) and register its `@tool` functions."""
        file = Path(path).expanduser()
        if not file.is_file():
            raise ToolError(f"tools file {str(file)!r} does not exist")
        if file.suffix != ".py":
            raise ToolError(f"tools file {str(file)!r} is not a Python file (.py)")
        mod_name = "agent_user_tools_" + "".join(c if c.isalnum() else "_" for c in str(file.resolve()))
        spec = importlib.util.spec_from_file_location(mod_name, file)
        if spec is None or spec.loader is None:
            raise ToolError(f"cannot import tools file {str(file)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            # what the file prints while imported goes to stderr: stdout carries answers and --json
            with contextlib.redirect_stdout(sys.stderr):
                spec.loader.exec_module(module)
        except SystemExit as exc:  # not an Exception: it would end the agent with no answer
            sys.modules.pop(mod_name, None)
            raise ToolError(f"tools file {str(file)!r} called sys.exit({exc.code!r}) while being imported; "
                            "a tools file should only define tools") from None
        except ToolError as exc:
            sys.modules.pop(mod_name, None)
            raise ToolError(f"{file}: {exc}") from exc
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise ToolError(f"error while importing tools file {str(file)!r}: {type(exc).__name__}: {exc}") from exc
        found = self.load_module(module, source=str(file), replace=replace)
        if not found:
            raise ToolError(f"tools file {str(file)!r} defines no @tool functions")
        return found

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP, replace: bool = False) -> list[ToolSpec]:
        """Register tools from installed packages: each entry point names a module or an `@tool` function."""
        found: list[ToolSpec] = []
        for ep in metadata.entry_points(group=group):
            try:
                with contextlib.redirect_stdout(sys.stderr):  # as for tools files: stdout is for answers
                    obj = ep.load()
            except SystemExit as exc:
                raise ToolError(f"entry point {ep.name!r} ({ep.value}) in group {group!r} called "
                                f"sys.exit({exc.code!r}) while being imported") from None
            except Exception as exc:  # a broken plug-in: say which one
                raise ToolError(f"entry point {ep.name!r} ({ep.value}) in group {group!r} "
                                f"failed to load: {exc}") from exc
            where = f"entry point {ep.name} = {ep.value}"
            if isinstance(obj, types.ModuleType):
                found.extend(self.load_module(obj, source=where, replace=replace))
            else:
                spec = spec_of(obj)
                if spec is None:
                    raise ToolError(f"{where}: is neither a module nor an @tool function")
                spec.source = where
                self.register(spec, replace=replace)
                found.append(spec)
        return found


def default_registry() -> ToolRegistry:
    """The built-in tools in their fixed order: search, load, calc, note."""
    registry = ToolRegistry()
    for module in (search, load, calc, note):
        registry.load_module(module, source="builtin")
    return registry


def build_registry(tool_files: list[str] | tuple[str, ...] = (), builtins: bool = True,
                   entry_points: bool = True) -> ToolRegistry:
    """Built-ins, then installed entry-point tools, then `--tools` files (a clash is an error)."""
    registry = default_registry() if builtins else ToolRegistry()
    if entry_points:
        registry.load_entry_points()
    for path in tool_files:
        registry.load_file(path)
    return registry
