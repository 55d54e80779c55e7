"""The tool registry: the tools a turn may call, by name, from built-ins, entry points and files.

The turn grammar (`agent.grammar.protocol`) is built from this registry, so only registered names
with well-typed arguments can ever be generated. What one tool is (`@tool`, ToolSpec) lives in
`agent.tooling.spec`; the built-in tools (`agent.tools`) import `@tool` from `agent.tooling`
exactly as a user's tools do, so importing them here makes no cycle.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from agent.tooling.json_tools import JsonTool, read_tools_json
from agent.tooling.origin import BUILTIN, ToolOrigin, json_file, python_file
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

    def required_only(self) -> ToolRegistry:
        """The same tools with only their required parameters: a call can then carry nothing else, and
        each tool runs with its own defaults for the rest (DecodeConfig.optional_args = "omit")."""
        return ToolRegistry([spec.required_only() for spec in self._tools.values()])

    def load_module(self, module: types.ModuleType, source: str = "", replace: bool = False,
                    own_only: bool = True, origin: ToolOrigin | None = None) -> list[ToolSpec]:
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
                if origin is not None:
                    spec.origin = origin
                found.append(spec)
        for spec in found:
            self.register(spec, replace=replace)
        return found

    def load_file(self, path: str | Path, replace: bool = False) -> list[ToolSpec]:
        """Import a Python file (`--tools x.py`) and register its `@tool` functions."""
        file, module = import_tools_file(path)
        found = self.load_module(module, source=str(file), replace=replace, origin=python_file(file))
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
            dist = getattr(ep, "dist", None)
            origin = ToolOrigin("entry_point", entry_point=f"{ep.name} = {ep.value}",
                                distribution=dist.name if dist is not None else "",
                                version=dist.version if dist is not None else "")
            if isinstance(obj, types.ModuleType):
                found.extend(self.load_module(obj, source=where, replace=replace, origin=origin))
            else:
                spec = spec_of(obj)
                if spec is None:
                    raise ToolError(f"{where}: is neither a module nor an @tool function")
                spec.source, spec.origin = where, origin
                self.register(spec, replace=replace)
                found.append(spec)
        return found


def import_tools_file(path: str | Path) -> tuple[Path, types.ModuleType]:
    """Import a Python tools file (`--tools x.py`); ToolError naming the file for any problem."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ToolError(f"tools file {str(file)!r} does not exist")
    if file.suffix != ".py":
        raise ToolError(f"tools file {str(file)!r} is not a Python file (.py) or a JSON Schema file (.json)")
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
    return file, module


def default_registry() -> ToolRegistry:
    """The built-in tools in their fixed order: search, load, calc, note."""
    registry = ToolRegistry()
    for module in (search, load, calc, note):
        registry.load_module(module, source="builtin", origin=BUILTIN)
    return registry


def build_registry(tool_files: list[str] | tuple[str, ...] = (), builtins: bool = True,
                   entry_points: bool = True, provided: ToolRegistry | None = None) -> ToolRegistry:
    """Built-ins, then installed entry-point tools, then `--tools` files (a clash is an error).

    A `.json` file describes tools (agent.tooling.json_tools); each is run by the function of its
    name in a `.py` file also given, or by a tool of its name in `provided` (e.g. an MCP server's).
    A described tool with neither is an error here, before any model loads.
    """
    registry = default_registry() if builtins else ToolRegistry()
    if entry_points:
        registry.load_entry_points()
    python_files = [p for p in tool_files if Path(p).suffix != ".json"]
    json_files = [p for p in tool_files if Path(p).suffix == ".json"]
    described = {tool.name: (path, tool) for path in json_files for tool in read_tools_json(path)}
    for path in python_files:
        file, module = import_tools_file(path)
        found = registry.load_module(module, source=str(file), origin=python_file(file))
        runs = [name for name in described if callable(vars(module).get(name))]
        if not found and not runs:
            raise ToolError(f"tools file {str(file)!r} defines no @tool functions"
                            + (" and no function named after a tool of the .json files" if described else ""))
        for name in runs:
            json_path, tool = described.pop(name)
            if name in registry and registry.get(name).source != str(file):  # not this file's own @tool
                raise ToolError(f"tool {name!r} of {json_path} is already registered (from "
                                f"{registry.get(name).source}); rename one of them")
            registry.register(described_spec(tool, vars(module)[name], str(json_path), str(file),
                                             runner=python_file(file)), replace=True)
    for name, (json_path, tool) in described.items():
        runner = provided.get(name) if provided is not None and name in provided else None
        if runner is None:
            raise ToolError(f"{json_path}: tool {name!r} has no implementation: give a .py file with a function "
                            f"named {name!r} with --tools too, or an MCP server that provides it (--mcp)")
        registry.register(described_spec(tool, runner.func, str(json_path), runner.source, like=runner))
    if provided is not None:
        for spec in provided:
            if spec.name not in described:  # described by a .json file: registered above as described
                registry.register(spec)  # a clash with a tool of another source is an error
    return registry


def described_spec(tool: JsonTool, func: Callable[..., Any], json_path: str, runs_in: str,
                   like: ToolSpec | None = None, runner: ToolOrigin | None = None) -> ToolSpec:
    """The tool as its JSON describes it, run by `func`: an `@tool` function (or `like`) keeps its
    purity, timeout and process; a plain function is pure only if the JSON says readOnlyHint.
    `runner`: where `func` came from (default: `like`'s origin), recorded inside the JSON origin."""
    base = like if like is not None else spec_of(func)
    if like is None:
        _check_signature(tool, func, json_path)
    return ToolSpec(name=tool.name, description=tool.description, params=tool.params, func=func,
                    pure=base.pure if base else tool.read_only, timeout=base.timeout if base else 10.0,
                    source=f"{json_path} (run by {runs_in})", in_process=base.in_process if base else False,
                    json_schema=tool.schema,
                    origin=json_file(json_path, runner if runner is not None or like is None else like.origin))


def _check_signature(tool: JsonTool, func: Callable[..., Any], json_path: str) -> None:
    """The function takes every described argument, and needs none that the JSON makes optional."""
    where = f"{json_path}: tool {tool.name!r}: function {getattr(func, '__qualname__', tool.name)}"
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError) as exc:
        raise ToolError(f"{where}: cannot read its signature ({exc})") from None
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    described = {p.name: p for p in tool.params}
    for name in described:
        if name not in params and not takes_any:
            raise ToolError(f"{where}: takes no argument {name!r}, which the JSON describes")
    for p in params.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is not p.empty:
            continue
        if p.name not in described or not described[p.name].required:
            raise ToolError(f"{where}: needs argument {p.name!r}, which the JSON does not make required")


def callable_tools(registry: ToolRegistry | None, optional_args: str) -> ToolRegistry | None:
    """The tools as a turn's grammar may call them: with optional_args "omit", required parameters only."""
    return registry.required_only() if registry is not None and optional_args == "omit" else registry
