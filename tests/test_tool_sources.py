"""Sessions record where each tool came from; `sessions show` and the markdown export list it; `replay --rerun`
rebuilds every kind of tool from it (from any folder) and names, one line per tool, a source missing now.

Real runs through the CLI as subprocesses, with the time server from PyPI (no mocks). Sessions for the
error cases are recorded once by a real run and then re-run after their sources are moved or broken."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from agent.config import DecodeConfig
from agent.sessions.store import SessionStore
from agent.tooling.origin import tool_sources
from agent.tooling.rebuild import ToolRebuild
from agent.tooling.registry import build_registry

TIME_SERVER = "python -m mcp_server_time"  # `python` found on PATH: recorded as the absolute program
SHOUT = '''
from agent.tooling import tool


@tool
def shout(word: str) -> str:
    """Shout a word."""
    return word.upper()


def book(day):
    return "booked " + day
'''
BOOK = [{"name": "book", "description": "Book a day.",
         "parameters": {"type": "object", "properties": {"day": {"enum": ["mon", "tue"]}}, "required": ["day"]}}]
SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("echoer")


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return text


server.run()
'''


def agent(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "250",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("AGENT_KB", None)
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def server_info() -> Any:
    """The name and version the time server gives any client in its initialize result."""
    async def ask() -> Any:
        params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_server_time"])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            return (await session.initialize()).server_info

    return asyncio.run(ask())


@pytest.fixture(scope="module")
def recorded(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `agent run` in a work folder, every tool given by a relative path: a Python file, a JSON file
    run by its function, the time server, and a server script of its own."""
    root = tmp_path_factory.mktemp("sources")
    work, home = root / "work", root / "home"
    work.mkdir()
    home.mkdir()
    (work / "shout.py").write_text(SHOUT, encoding="utf-8")
    (work / "book.json").write_text(json.dumps(BOOK), encoding="utf-8")
    (work / "echoer.py").write_text(SERVER, encoding="utf-8")
    model = root / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    db = root / "s.sqlite"
    done = agent("run", "What time is it?", "--model", str(model), "--tools", "shout.py", "--tools", "book.json",
                 "--mcp", TIME_SERVER, "--mcp", "python echoer.py", "--max-new-tokens", "12", "--json",
                 "--db", str(db), cwd=work, home=home)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return {"root": root, "work": work, "home": home, "db": db, "sid": json.loads(done.stdout)["session_id"]}


def stored_sources(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        (config,) = conn.execute("SELECT config FROM turns").fetchone()
    return json.loads(config)["tool_sources"]


def test_each_tool_is_recorded_with_its_source_absolute(recorded: dict[str, Any]) -> None:
    work, python = recorded["work"], shutil.which("python", path=str(Path(sys.executable).parent))
    by_tool = {entry.pop("tool"): entry for entry in stored_sources(recorded["db"])}
    assert list(by_tool) == ["search", "load", "calc", "note", "shout", "book", "get_current_time", "convert_time",
                             "echo"]
    assert by_tool["calc"] == {"kind": "builtin"}
    assert by_tool["shout"] == {"kind": "python", "path": str(work / "shout.py")}
    assert by_tool["book"] == {"kind": "json", "path": str(work / "book.json"),
                               "runner": {"kind": "python", "path": str(work / "shout.py")}}
    info = server_info()
    assert by_tool["get_current_time"] == {
        "kind": "mcp", "server": "python -m mcp_server_time", "command": [python, "-m", "mcp_server_time"],
        "cwd": str(work), "server_name": info.name, "version": info.version}
    assert by_tool["echo"]["command"] == [python, "echoer.py"] and by_tool["echo"]["server_name"] == "echoer"


def test_sessions_show_and_the_markdown_export_list_the_sources(recorded: dict[str, Any]) -> None:
    work, info = recorded["work"], server_info()
    python = shutil.which("python", path=str(Path(sys.executable).parent))
    lines = [
        "tools from built-in: search, load, calc, note",
        f"tools from Python file {work / 'shout.py'}: shout",
        f"tools from JSON file {work / 'book.json'}, run by Python file {work / 'shout.py'}: book",
        f"tools from MCP server {python} -m mcp_server_time ({info.name} {info.version}): get_current_time, "
        "convert_time",
    ]
    shown = agent("sessions", "show", recorded["sid"], "--db", str(recorded["db"]), cwd=recorded["root"],
                  home=recorded["home"])
    assert shown.returncode == 0
    for line in lines:
        assert f"  {line}\n" in shown.stdout
    exported = agent("sessions", "export", recorded["sid"], "--format", "markdown", "--db", str(recorded["db"]),
                     cwd=recorded["root"], home=recorded["home"])
    assert f"- tools from Python file {work / 'shout.py'}: shout\n" in exported.stdout
    assert "- tools from MCP server" in exported.stdout and "get\\_current\\_time, convert\\_time" in exported.stdout


def test_rerun_from_another_folder_rebuilds_every_kind_of_tool(recorded: dict[str, Any]) -> None:
    elsewhere = recorded["root"] / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    work = recorded["work"]
    done = agent("replay", recorded["sid"], "--rerun", "--db", str(recorded["db"]), "--tools", str(work / "shout.py"),
                 "--mcp", TIME_SERVER, "--mcp", f"python {work / 'echoer.py'}", cwd=elsewhere, home=recorded["home"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "turn 1: identical" in done.stdout


def test_a_missing_source_is_one_line_naming_the_tool_and_its_source(recorded: dict[str, Any]) -> None:
    work, db, sid = recorded["work"], str(recorded["db"]), recorded["sid"]
    python = shutil.which("python", path=str(Path(sys.executable).parent))
    replay = ["replay", sid, "--rerun", "--db", db]
    given = ["--tools", str(work / "shout.py"), "--mcp", TIME_SERVER, "--mcp", f"python {work / 'echoer.py'}"]

    def problems(*args: str) -> list[str]:
        done = agent(*replay, *args, cwd=recorded["root"], home=recorded["home"])
        assert done.returncode == 1 and "Traceback" not in done.stderr and "turn 1" not in done.stdout, done.stderr
        return done.stderr.removeprefix("Error: ").splitlines()

    # nothing given: the Python file and each server's tools
    lines = problems()
    assert f"tool 'shout' (Python file {work / 'shout.py'}): not given: re-run with --tools {work / 'shout.py'}" \
        in lines[0]
    assert lines[1].startswith(f"tool 'book' (JSON file {work / 'book.json'}, run by Python file ")
    assert lines[2].startswith(f"tool 'get_current_time' (MCP server {python} -m mcp_server_time (")
    assert f"the server is not running: re-run with --mcp '{python} -m mcp_server_time'" in lines[2]
    assert len(lines) == 5 and lines[-1].startswith(f"tool 'echo' (MCP server {python} echoer.py (echoer")
    assert f"re-run with --mcp '{python} {work / 'echoer.py'}'" in lines[-1]  # the file it ran, from any folder
    # the JSON file gone; the echo server's script gone (its command fails)
    moved = recorded["root"] / "moved"
    moved.mkdir(exist_ok=True)
    for name in ("book.json", "echoer.py"):
        (work / name).rename(moved / name)
    try:
        lines = problems(*given)
    finally:
        for name in ("book.json", "echoer.py"):
            (moved / name).rename(work / name)
    assert lines[0] == (f"tool 'book' (JSON file {work / 'book.json'}, run by Python file {work / 'shout.py'}): "
                        "the file is gone")
    assert lines[1].startswith(f"tool 'echo' (MCP server {python} echoer.py (echoer")
    assert "the server given for it did not start: MCP server" in lines[1] and len(lines) == 2
    # the Python file gone, none of its name given
    (work / "shout.py").rename(moved / "shout.py")
    try:
        lines = problems("--mcp", TIME_SERVER, "--mcp", f"python {work / 'echoer.py'}")
    finally:
        (moved / "shout.py").rename(work / "shout.py")
    assert lines[0] == (f"tool 'shout' (Python file {work / 'shout.py'}): the file is gone, and no file of its "
                        "name was given with --tools")


def test_a_session_recorded_before_sources_still_reruns(recorded: dict[str, Any]) -> None:
    root, work = recorded["root"], recorded["work"]
    old = root / "old.sqlite"
    done = agent("run", "hi", "--model", str(root / "model"), "--tools", "shout.py", "--max-new-tokens", "8",
                 "--json", "--db", str(old), cwd=work, home=recorded["home"])
    assert done.returncode == 0, done.stderr
    sid = json.loads(done.stdout)["session_id"]
    with sqlite3.connect(old) as conn:  # as sessions were stored before: tools and tool files only
        (config,) = conn.execute("SELECT config FROM turns").fetchone()
        stripped = {k: v for k, v in json.loads(config).items() if k != "tool_sources"}
        conn.execute("UPDATE turns SET config = ?", (json.dumps(stripped),))
    done = agent("replay", sid, "--rerun", "--db", str(old), cwd=root, home=recorded["home"])
    assert done.returncode == 1 and "tool files that were not given" in done.stderr
    assert str(work / "shout.py") in done.stderr and "Traceback" not in done.stderr
    done = agent("replay", sid, "--rerun", "--db", str(old), "--tools", str(work / "shout.py"), cwd=root,
                 home=recorded["home"])
    assert done.returncode == 0 and "turn 1: identical" in done.stdout, done.stdout + done.stderr
    shown = agent("sessions", "show", sid, "--db", str(old), cwd=root, home=recorded["home"])
    assert shown.returncode == 0 and "tools from" not in shown.stdout


def test_an_entry_point_tool_is_recorded_with_its_distribution(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fancy_agent_tools.py").write_text(
        "from agent.tooling import tool\n\n\n@tool\ndef reverse(text: str) -> str:\n"
        '    """Reverse a text."""\n    return text[::-1]\n')
    dist = tmp_path / "fancy_agent_tools-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-agent-tools\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[agent.tools]\nfancy = fancy_agent_tools\n")
    with monkeypatch.context() as installed:
        installed.syspath_prepend(str(tmp_path))
        try:
            sources = tool_sources(build_registry())
            assert ToolRebuild().problems(sources) == []
        finally:
            sys.modules.pop("fancy_agent_tools", None)
    assert sources[-1] == {"tool": "reverse", "kind": "entry_point", "entry_point": "fancy = fancy_agent_tools",
                           "distribution": "fancy-agent-tools", "version": "1.0"}
    # uninstalled since
    assert ToolRebuild().problems(sources) == [
        "tool 'reverse' (entry point fancy = fancy_agent_tools of fancy-agent-tools 1.0): no installed package "
        "provides it now"]


def test_a_recorded_server_command_is_never_run_from_the_session(tmp_path: Path) -> None:
    marker = tmp_path / "ran.marker"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    db = tmp_path / "crafted.sqlite"
    with SessionStore.open(db) as store:  # a crafted session naming a command as its MCP server
        sid = store.create_session("some-model", None)
        store.add_message(sid, 1, "user", "hi")
        store.add_message(sid, 1, "assistant", "HI")
        store.record_turn(sid, 1, config={**DecodeConfig(max_new_tokens=3).to_dict(), "tools": ["x"],
                                          "tool_sources": [{"tool": "x", "kind": "mcp", "command": command}]},
                          tool_calls=[], candidates=[], timings={}, token_counts={})
    done = agent("replay", sid, "--rerun", "--db", str(db), cwd=tmp_path, home=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: tool 'x' (MCP server ") and "the server is not running: re-run with --mcp" \
        in done.stderr and len(done.stderr.splitlines()) == 1
    assert not marker.exists()


def test_a_json_tool_run_by_a_server_is_rebuilt_with_its_description(tmp_path: Path) -> None:
    from agent.tooling.mcp_client import McpHub  # the test's own hub: the recording side of the CLI
    from agent.tooling.mcp_config import from_command_line
    from agent.tooling.registry import ToolRegistry
    from agent.tooling.runner import ToolRunner

    described = tmp_path / "time.json"
    described.write_text(json.dumps([{"name": "get_current_time", "description": "Time in Tokyo or Paris.",
                                      "parameters": {"type": "object", "required": ["timezone"], "properties": {
                                          "timezone": {"enum": ["Asia/Tokyo", "Europe/Paris"]}}}}]))
    server = f"{sys.executable} -m mcp_server_time"
    hub = McpHub()
    try:
        provided = ToolRegistry(hub.start(from_command_line(server)))
        sources = tool_sources(build_registry([str(described)], provided=provided))
    finally:
        hub.close()
    entry = next(e for e in sources if e["tool"] == "get_current_time")
    assert entry["kind"] == "json" and entry["path"] == str(described) and entry["runner"]["kind"] == "mcp"
    rebuild = ToolRebuild(mcp_servers=(server,), config=False)
    try:
        spec = rebuild.registry(sources).get("get_current_time")
        assert spec.description == "Time in Tokyo or Paris." and spec.params[0].type.choices == ("Asia/Tokyo",
                                                                                                  "Europe/Paris")
        record = ToolRunner(rebuild.registry(sources)).run("get_current_time", {"timezone": "Europe/Paris"})
        assert json.loads(record.result)["timezone"] == "Europe/Paris", record.error
    finally:
        rebuild.close()
