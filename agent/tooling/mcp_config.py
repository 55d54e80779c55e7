"""Which MCP servers to start: `--mcp "COMMAND ARGS..."` and the `mcpServers` section of
`agent_home()/config.json` (the shape Claude Desktop uses):

    {"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}}}}

An optional `"timeout"` (seconds, default DEFAULT_TIMEOUT) bounds each call to that server's tools.
Nothing here imports `mcp`: reading the configuration is quick and needs no server.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.paths import HomeError, agent_home
from agent.tooling.json_tools import read_json_file
from agent.tooling.spec import ToolError

DEFAULT_TIMEOUT = 30.0  # seconds per call: servers start subprocesses, reach the network, ...
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ServerConfig:
    """One MCP server to start over stdio."""

    name: str  # how errors and `agent tools list` name it
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = field(default=None, hash=False)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def command_line(self) -> str:
        return shlex.join([self.command, *self.args])


def from_command_line(text: str) -> ServerConfig:
    """A `--mcp "COMMAND ARGS..."` value (split as a POSIX shell would, without running one)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ToolError(f"--mcp {text!r}: cannot split the command line ({exc})") from None
    if not words:
        raise ToolError("--mcp needs a command, e.g. --mcp \"python -m mcp_server_time\"")
    # named as typed, but the program by its file name: a venv's full path says little
    return ServerConfig(name=shlex.join([Path(words[0]).name, *words[1:]]), command=words[0], args=tuple(words[1:]))


def configured_servers(command_lines: tuple[str, ...] | list[str] = (), config: bool = True) -> list[ServerConfig]:
    """The servers to start: the agent home's config.json (with `config`), then each `--mcp` command."""
    servers = []
    if config:
        try:
            servers = read_config(agent_home() / CONFIG_FILE)
        except HomeError:  # no home folder, so no configuration in it
            servers = []
    servers += [from_command_line(text) for text in command_lines]
    names = [s.name for s in servers]
    for name in names:
        if names.count(name) > 1:
            raise ToolError(f"MCP server {name!r} is given twice")
    return servers


def read_config(path: Path) -> list[ServerConfig]:
    """The servers of a config file's `mcpServers` section; none when the file does not exist."""
    if not path.is_file():
        return []
    data = read_json_file(path, str(path))
    if not isinstance(data, dict):
        raise ToolError(f"{path}: must be a JSON object")
    servers = data.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise ToolError(f"{path}: mcpServers must be an object of servers by name")
    return [_server(name, entry, f"{path}: mcpServers.{name}") for name, entry in servers.items()]


def _server(name: str, entry: Any, where: str) -> ServerConfig:
    if not isinstance(entry, dict):
        raise ToolError(f"{where}: must be an object with \"command\" (and \"args\", \"env\")")
    command, args, env = entry.get("command"), entry.get("args", []), entry.get("env")
    if not isinstance(command, str) or not command:
        raise ToolError(f"{where}.command: must be the program to start")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ToolError(f"{where}.args: must be a list of strings")
    if env is not None and (not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values())):
        raise ToolError(f"{where}.env: must be an object of strings")
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ToolError(f"{where}.timeout: must be a number of seconds > 0")
    for key in entry:
        if key not in ("command", "args", "env", "timeout", "type"):
            raise ToolError(f"{where}: {json.dumps(key)} is not supported (only stdio servers: command, args, env)")
    if entry.get("type", "stdio") != "stdio":
        raise ToolError(f"{where}.type: only \"stdio\" servers are supported")
    return ServerConfig(name=name, command=command, args=tuple(args), env=env, timeout=float(timeout))
