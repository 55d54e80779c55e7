"""MCP servers as tools: start each server (stdio), list its tools, call them, stop the servers.

One asyncio loop in a background thread owns every client session: the `mcp` client is async and
its stdio transport's task groups must be entered and left in the same task, so each server lives
in one task (`_serve`) from start to stop. The runner's calls come from other threads and block on
that loop with the tool's timeout (`McpHub.call`); a server that dies or hangs makes the call fail
with a message, which the runner writes as an error island; the turn goes on.

MCP tools run in the agent's own process (`in_process=True`): a forked worker would not have the
loop thread. A timed-out call is cancelled (the request is abandoned); the server keeps running.

Purity follows the server's annotations: pure only when `readOnlyHint` is true; anything else is a
side effect (asked about first; `--yes` allows). Servers are stopped on `close()`, at interpreter
exit, and on SIGTERM (turned into SystemExit so the command's cleanup runs), so none is orphaned.
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import concurrent.futures
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from typing import IO, Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from agent.tooling.json_tools import check_name, parameters_params
from agent.tooling.mcp_config import ServerConfig
from agent.tooling.origin import ToolOrigin, resolved_command
from agent.tooling.spec import ToolError, ToolFailure, ToolSpec

START_TIMEOUT = 30.0  # seconds for a server to start and list its tools
STOP_TIMEOUT = 10.0  # seconds for all servers to stop (the transport terminates, then kills, each)
STDERR_TAIL = 800  # characters of a server's stderr quoted when it fails to start
_GROUP = getattr(builtins, "BaseExceptionGroup", None)  # Python 3.11+; before, anyio's backport subclasses none


class McpTool:
    """The function behind one MCP tool: `McpTool(**args)` calls it on its server."""

    def __init__(self, hub: McpHub, server: ServerConfig, name: str) -> None:
        self.hub, self.server, self.name = hub, server, name
        self.__name__ = self.__qualname__ = name  # read by error messages naming a tool's function

    def __call__(self, **args: Any) -> str:
        return self.hub.call(self.server, self.name, args)


class McpHub:
    """The running MCP servers of one command, and the loop thread that talks to them."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-client", daemon=True)
        self._thread.start()
        self._sessions: dict[str, ClientSession] = {}
        self._dead: dict[str, str] = {}  # server name -> why it stopped answering
        self._origins: dict[str, ToolOrigin] = {}  # server name -> its command and what it says it is
        self._stops: list[asyncio.Event] = []
        self._tasks: list[concurrent.futures.Future[None]] = []
        self._logs: list[IO[str]] = []
        self._closed = False
        self.skipped: list[str] = []  # why a server's tool was left out (its schema cannot be mapped)
        atexit.register(self.close)
        self._sigterm = _stop_on_sigterm()

    # -- starting -----------------------------------------------------------------------------
    def start(self, server: ServerConfig) -> list[ToolSpec]:
        """Start one server and return its tools as specs; ToolError (with its stderr) if it cannot."""
        log = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        ready: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()
        stop = asyncio.Event()
        self._stops.append(stop)
        self._tasks.append(asyncio.run_coroutine_threadsafe(self._serve(server, log, ready, stop), self._loop))
        try:
            tools = ready.result(START_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise ToolError(f"MCP server {server.name!r} did not list its tools within {START_TIMEOUT:g} s"
                            f"{_tail(log)}") from None
        except Exception as exc:
            raise ToolError(f"MCP server {server.name!r} could not start: {_reason(exc)}{_tail(log)}") from None
        specs = []
        for tool in tools:
            try:
                specs.append(self._spec(server, tool))
            except ToolError as exc:  # one tool the grammar cannot express must not cost the server's others
                self.skipped.append(f"{exc}; the tool is left out")
        return specs

    async def _serve(self, server: ServerConfig, log: IO[str], ready: concurrent.futures.Future[list[Any]],
                     stop: asyncio.Event) -> None:
        params = StdioServerParameters(command=server.command, args=list(server.args), env=server.env)
        try:
            async with stdio_client(params, errlog=log) as (read, write), ClientSession(read, write) as session:
                started = await session.initialize()
                info = getattr(started, "server_info", None)
                self._origins[server.name] = ToolOrigin(
                    "mcp", server=server.name, command=resolved_command(server.command, server.args),
                    cwd=os.getcwd(), server_name=str(getattr(info, "name", "") or ""),
                    version=str(getattr(info, "version", "") or ""))
                tools: list[Any] = []
                cursor = None
                while True:  # servers may page their tool list
                    page = await session.list_tools(cursor=cursor) if cursor else await session.list_tools()
                    tools += page.tools
                    cursor = getattr(page, "next_cursor", None)
                    if not cursor:
                        break
                self._sessions[server.name] = session
                ready.set_result(tools)
                await stop.wait()
        except BaseException as exc:  # the server failed to start, or died: say so to whoever waits
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            self._dead[server.name] = _reason(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._dead.setdefault(server.name, "the server was stopped")

    def _spec(self, server: ServerConfig, tool: Any) -> ToolSpec:
        where = f"MCP server {server.name!r}: tool {json.dumps(getattr(tool, 'name', None))}"
        name = check_name(tool.name, where)
        schema = getattr(tool, "input_schema", None) or getattr(tool, "inputSchema", None)
        params = parameters_params(schema, f"{where}: inputSchema")
        lines = [line.strip() for line in (tool.description or "").splitlines() if line.strip()]
        annotations = getattr(tool, "annotations", None)
        read_only = annotations is not None and True in (getattr(annotations, "read_only_hint", None),
                                                         getattr(annotations, "readOnlyHint", None))
        return ToolSpec(name=name, description=lines[0] if lines else name, params=params,
                        func=McpTool(self, server, name), pure=read_only, timeout=server.timeout,
                        source=f"MCP server {server.name}", in_process=True, json_schema=schema,
                        origin=self._origins.get(server.name))

    # -- calling ------------------------------------------------------------------------------
    def call(self, server: ServerConfig, tool: str, args: dict[str, Any]) -> str:
        """Call a tool and wait at most the server's timeout; ToolFailure saying what went wrong."""
        if server.name in self._dead or server.name not in self._sessions:
            reason = self._dead.get(server.name, "it is not running")
            raise ToolFailure(f"MCP server {server.name!r} is not running ({reason})")
        session = self._sessions[server.name]
        future = asyncio.run_coroutine_threadsafe(
            session.call_tool(tool, args, read_timeout_seconds=server.timeout), self._loop)
        try:
            result = future.result(server.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolFailure(f"{tool} timed out after {server.timeout:g} s (MCP server {server.name!r})") from None
        except Exception as exc:
            reason = self._dead.get(server.name) or _reason(exc)
            raise ToolFailure(f"{tool} failed: MCP server {server.name!r}: {reason}") from None
        return _result_text(tool, result)

    # -- stopping -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every server (each transport ends its process) and the loop thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for stop in self._stops:
            self._loop.call_soon_threadsafe(stop.set)
        for task in self._tasks:
            with contextlib.suppress(Exception):  # a server that failed already said so
                task.result(STOP_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT)
        if not self._thread.is_alive():  # a stopped loop is closed too: else it is reported when collected
            self._loop.close()
        for log in self._logs:
            log.close()
        atexit.unregister(self.close)
        if self._sigterm and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # no servers left to stop


def _result_text(tool: str, result: Any) -> str:
    """An MCP CallToolResult as island text: its text content (structured content when there is none)."""
    parts = []
    for item in getattr(result, "content", None) or []:
        text = getattr(item, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(item, 'type', 'content')}]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    text = "\n".join(parts)
    if getattr(result, "is_error", False):
        raise ToolFailure(text or f"{tool} reported an error")
    return text


def _reason(exc: BaseException) -> str:
    """A one-line reason; the task groups of the transport wrap the real error in exception groups."""
    while _GROUP is not None and isinstance(exc, _GROUP) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _tail(log: IO[str]) -> str:
    with contextlib.suppress(Exception):
        log.flush()
        log.seek(0)
        text = log.read().strip()
        if text:
            return f"; its stderr ends: {text[-STDERR_TAIL:]}"
    return ""


def _stop_on_sigterm() -> bool:
    """SIGTERM ends the command through SystemExit, so the cleanup that stops the servers runs (the
    default action would end the process at once). Only where nobody installed a handler before;
    True when this one was installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return True


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)
