"""Where a tool came from, as data: a session records it for each turn (`tool_sources` in the turn's
config), `agent sessions show` lists it, and `agent replay --rerun` rebuilds the tool from it.

Kinds: `builtin`; `python` (a `--tools` file, its absolute path); `entry_point` (the entry point with
its distribution and version); `json` (a `--tools` JSON Schema file, its absolute path, and the origin
of what runs it: a Python file or an MCP server); `mcp` (the server's command, the program resolved
to an absolute path, the folder it started in, and the name and version it gave in its initialize
result). A server's environment is not recorded: configurations keep API keys there. Paths are
absolute, so neither the record nor a re-run depends on the folder a command runs in.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from typing import Any

KINDS = ("builtin", "python", "entry_point", "json", "mcp", "other")


@dataclass(frozen=True)
class ToolOrigin:
    """Where one tool came from (see the module's docstring for each kind's fields)."""

    kind: str
    path: str = ""  # python, json: the file, absolute
    entry_point: str = ""  # entry_point: `name = module:attr`
    distribution: str = ""  # entry_point: the installed distribution that declares it
    version: str = ""  # entry_point: the distribution's version; mcp: the server's own
    server: str = ""  # mcp: its name in config.json, or the --mcp command as typed
    command: tuple[str, ...] = ()  # mcp: program (absolute when found on PATH) and arguments
    cwd: str = ""  # mcp: the folder it was started in
    server_name: str = ""  # mcp: the name in the server's initialize result
    runner: ToolOrigin | None = None  # json: what runs the described tool
    note: str = ""  # other: the registration's own source text

    def describe(self) -> str:
        """One line for people: `Python file /abs/t.py`, `MCP server python -m x (x 1.2)`, ..."""
        if self.kind == "builtin":
            return "built-in"
        if self.kind == "python":
            return f"Python file {self.path}"
        if self.kind == "entry_point":
            dist = " ".join(part for part in (self.distribution, self.version) if part)
            return f"entry point {self.entry_point}" + (f" of {dist}" if dist else "")
        if self.kind == "json":
            runs = f", run by {self.runner.describe()}" if self.runner is not None else ""
            return f"JSON file {self.path}{runs}"
        if self.kind == "mcp":
            info = " ".join(part for part in (self.server_name, self.version) if part)
            return f"MCP server {shlex.join(self.command) or self.server}" + (f" ({info})" if info else "")
        return self.note or "registered by the program"

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, as stored (`command` as a list, `runner` nested)."""
        out: dict[str, Any] = {"kind": self.kind}
        for key in ("path", "entry_point", "distribution", "version", "server", "cwd", "server_name", "note"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.command:
            out["command"] = list(self.command)
        if self.runner is not None:
            out["runner"] = self.runner.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any) -> ToolOrigin:
        """An origin read back from a stored record; unknown or malformed fields are left out (a record
        is data: it may come from a newer version, or be crafted)."""
        if not isinstance(data, dict):
            return cls("other", note="an unreadable record")
        kind = data.get("kind") if data.get("kind") in KINDS else "other"
        text = {key: data[key] for key in ("path", "entry_point", "distribution", "version", "server", "cwd",
                                           "server_name", "note") if isinstance(data.get(key), str)}
        command = data.get("command")
        runner = data.get("runner")
        return cls(kind, **text,
                   command=tuple(command) if isinstance(command, list) and all(isinstance(c, str) for c in command)
                   else (),
                   runner=cls.from_json(runner) if isinstance(runner, dict) else None)


BUILTIN = ToolOrigin("builtin")


def python_file(path: str | os.PathLike[str]) -> ToolOrigin:
    return ToolOrigin("python", path=os.path.abspath(os.path.expanduser(path)))


def json_file(path: str | os.PathLike[str], runner: ToolOrigin | None) -> ToolOrigin:
    return ToolOrigin("json", path=os.path.abspath(os.path.expanduser(path)), runner=runner)


def resolved_command(command: str, args: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The command with its program as the absolute path it runs from (PATH searched as a shell would);
    a program not found stays as given."""
    found = shutil.which(command)
    program = os.path.abspath(found) if found and os.sep in found else (found or command)
    return (program, *args)


def tool_sources(specs: Any) -> list[dict[str, Any]]:
    """What a turn's config records: `{"tool": name, **origin}` for each tool, in registration order."""
    out = []
    for spec in specs or ():
        origin = spec.origin if spec.origin is not None else ToolOrigin("other", note=spec.source)
        out.append({"tool": spec.name, **origin.to_json()})
    return out


def read_sources(entries: Any) -> list[tuple[str, ToolOrigin]]:
    """(tool name, origin) for each stored entry that names a tool."""
    if not isinstance(entries, list):
        return []
    return [(entry["tool"], ToolOrigin.from_json(entry)) for entry in entries
            if isinstance(entry, dict) and isinstance(entry.get("tool"), str)]
