"""A stored session's tools, rebuilt for `agent replay --rerun` from the sources its turns recorded.

Each turn recorded where each of its tools came from (`tool_sources`, agent.tooling.origin). A re-run
rebuilds every one of them, in the recorded order:

- built-ins and installed entry points, as they are installed now;
- Python files only from `--tools`: a session is data, and importing a file it names would run code
  it chose. A given file stands for the recorded one of the same absolute path, else for the only
  recorded one of its name (agent.sessions.replay.given_for);
- JSON Schema files from their recorded absolute path (data, read and not run), paired again with the
  function of their Python file or the tool of their MCP server;
- MCP servers from `--mcp` and the agent home's config.json, for the same reason as Python files:
  the recorded command is started only when the user gives it. A started server stands for the
  recorded one with the same command (program resolved on PATH), else the one reporting the same name.

A source missing now (file gone, not given, server not started or failing, tool no longer there) is a
MissingToolSource: one line naming the tool, its recorded source and what is wrong.
"""

from __future__ import annotations

import shlex
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.sessions.replay import given_for
from agent.tooling.json_tools import read_tools_json
from agent.tooling.mcp_config import ServerConfig, configured_servers
from agent.tooling.origin import ToolOrigin, python_file, read_sources, resolved_command
from agent.tooling.registry import ToolRegistry, default_registry, described_spec, import_tools_file
from agent.tooling.spec import ToolError, ToolSpec


class MissingToolSource(ToolError):
    """A recorded tool cannot be rebuilt now; the message is one line naming the tool and its source."""


@dataclass
class _Server:
    """One MCP server the user gave for the re-run: started (its tools), or why it did not start."""

    config: ServerConfig
    command: tuple[str, ...]
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    server_name: str = ""
    error: str = ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


class ToolRebuild:
    """The tools given for a re-run (`--tools` files, `--mcp` servers, config.json), and the recorded
    tools rebuilt from them. Servers start on first need; `close()` stops them."""

    def __init__(self, tool_files: tuple[str, ...] | list[str] = (), mcp_servers: tuple[str, ...] | list[str] = (),
                 config: bool = True) -> None:
        self.tool_files = [Path(f).expanduser() for f in tool_files]
        self.mcp_lines = tuple(mcp_servers)
        self.config = config
        self._builtins: ToolRegistry | None = None
        self._entry_points: ToolRegistry | ToolError | None = None
        self._files: dict[Path, tuple[types.ModuleType, ToolRegistry] | ToolError] = {}
        self._servers: list[_Server] | ToolError | None = None
        self._hub: Any = None

    # -- what the CLI asks --------------------------------------------------------------------
    def problems(self, entries: Any) -> list[str]:
        """One line per recorded tool that cannot be rebuilt now (none: the re-run can go ahead)."""
        lines: list[str] = []
        for name, origin in read_sources(entries):
            try:
                self.spec(name, origin)
            except MissingToolSource as exc:
                if str(exc) not in lines:
                    lines.append(str(exc))
        return lines

    def registry(self, entries: Any) -> ToolRegistry:
        """The turn's tools as it recorded them; MissingToolSource for the first that cannot be rebuilt."""
        return ToolRegistry([self.spec(name, origin) for name, origin in read_sources(entries)])

    def spec(self, name: str, origin: ToolOrigin) -> ToolSpec:
        try:
            return self._find(name, origin)
        except ToolError as exc:
            raise MissingToolSource(_one_line(f"tool {name!r} ({origin.describe()}): {exc}")) from None

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()

    # -- by kind ------------------------------------------------------------------------------
    def _find(self, name: str, origin: ToolOrigin) -> ToolSpec:
        if origin.kind == "builtin":
            if self._builtins is None:
                self._builtins = default_registry()
            return _named(self._builtins, name, "there is no built-in tool of that name now")
        if origin.kind == "entry_point":
            return _named(self._entry_point_tools(), name, "no installed package provides it now")
        if origin.kind == "python":
            return _named(self._python(origin.path)[1], name, "the file defines no @tool of that name now")
        if origin.kind == "json":
            return self._described(name, origin)
        if origin.kind == "mcp":
            return self._mcp(name, origin)
        raise ToolError("its source was not recorded in a form that can be rebuilt")

    def _entry_point_tools(self) -> ToolRegistry:
        if self._entry_points is None:
            try:
                self._entry_points = ToolRegistry()
                self._entry_points.load_entry_points()
            except ToolError as exc:
                self._entry_points = exc
        if isinstance(self._entry_points, ToolError):
            raise self._entry_points
        return self._entry_points

    def _python(self, recorded: str) -> tuple[types.ModuleType, ToolRegistry]:
        """The given file standing for a recorded one, imported once (its module and its @tool functions)."""
        given = given_for(recorded, self.tool_files)
        if given is None:
            if Path(recorded).is_file():
                raise ToolError(f"not given: re-run with --tools {shlex.quote(recorded)} (a Python file is "
                                "imported only from the command line, never from the session)")
            raise ToolError("the file is gone, and no file of its name was given with --tools")
        if given not in self._files:
            try:
                file, module = import_tools_file(given)
                tools = ToolRegistry()
                tools.load_module(module, source=str(file), origin=python_file(file))
                self._files[given] = (module, tools)
            except ToolError as exc:
                self._files[given] = exc
        found = self._files[given]
        if isinstance(found, ToolError):
            raise found
        return found

    def _described(self, name: str, origin: ToolOrigin) -> ToolSpec:
        """A JSON Schema tool: its description from the recorded file, run as it was."""
        if not Path(origin.path).is_file():
            raise ToolError("the file is gone")
        described = {tool.name: tool for tool in read_tools_json(origin.path)}
        if name not in described:
            raise ToolError("the file no longer describes it")
        runner = origin.runner
        if runner is not None and runner.kind == "python":
            module, _ = self._python(runner.path)
            func = vars(module).get(name)
            if not callable(func):
                raise ToolError(f"{runner.describe()} has no function {name!r} now")
            return described_spec(described[name], func, origin.path, module.__file__ or runner.path,
                                  runner=python_file(module.__file__ or runner.path))
        if runner is not None and runner.kind == "mcp":
            spec = self._mcp(name, runner)
            return described_spec(described[name], spec.func, origin.path, spec.source, like=spec)
        raise ToolError("what ran it was not recorded")

    def _mcp(self, name: str, origin: ToolOrigin) -> ToolSpec:
        servers = self._started()
        match = [s for s in servers if _same_command(s.command, origin)]
        if not match and origin.server_name:
            named = [s for s in servers if s.server_name == origin.server_name]
            match = named if len(named) == 1 else []
        if not match:
            command = shlex.join(_absolute_args(origin)) if origin.command else origin.server
            raise ToolError(f"the server is not running: re-run with --mcp {shlex.quote(command)} (a server's "
                            "command is run only when you give it, never from the session)")
        server = match[0]
        if server.error:
            raise ToolError(f"the server given for it did not start: {server.error}")
        if name not in server.tools:
            offered = ", ".join(server.tools) or "none"
            raise ToolError(f"the server no longer offers it (its tools: {offered})")
        return server.tools[name]

    def _started(self) -> list[_Server]:
        """The servers given for the re-run, started once (each failure kept as its server's error)."""
        if self._servers is None:
            try:
                configs = configured_servers(self.mcp_lines, config=self.config)
            except ToolError as exc:
                self._servers = exc
            else:
                self._servers = [self._start(config) for config in configs]
        if isinstance(self._servers, ToolError):
            raise self._servers
        return self._servers

    def _start(self, config: ServerConfig) -> _Server:
        server = _Server(config, resolved_command(config.command, config.args))
        try:
            if self._hub is None:
                from agent.tooling.mcp_client import McpHub  # mcp and its async stack: only when servers are given

                self._hub = McpHub()
            specs = self._hub.start(config)
        except (ToolError, ImportError) as exc:
            server.error = _one_line(str(exc))
            return server
        server.tools = {spec.name: spec for spec in specs}
        origins = [spec.origin for spec in specs if spec.origin is not None]
        server.server_name = origins[0].server_name if origins else ""
        return server


def _same_command(given: tuple[str, ...], origin: ToolOrigin) -> bool:
    """Whether a given command is the recorded one: word for word, a relative word of the recorded one
    also matching that path in the folder it ran in (`python server.py` in /work is `python /work/server.py`)."""
    if not origin.command or len(given) != len(origin.command):
        return False
    return all(mine == theirs or (origin.cwd and not Path(theirs).is_absolute() and mine == str(Path(origin.cwd) /
                                                                                               theirs))
               for mine, theirs in zip(given, origin.command))


def _absolute_args(origin: ToolOrigin) -> list[str]:
    """The recorded command with each argument that names a file of the folder it ran in made absolute,
    so the suggested `--mcp` works from any folder (`python server.py` ran in /work: /work/server.py)."""
    folder = Path(origin.cwd) if origin.cwd else None
    return [str(folder / arg) if folder is not None and not Path(arg).is_absolute() and (folder / arg).is_file()
            else arg for arg in origin.command]


def _named(registry: ToolRegistry, name: str, missing: str) -> ToolSpec:
    if name not in registry:
        raise ToolError(missing)
    return registry.get(name)
