"""MCP servers as tools, with real servers over stdio (no mocks): mcp-server-time from PyPI, and a small
server written here whose tools have a side effect, crash the server, or hang. Each run goes through
the CLI as a subprocess; afterwards no server process may be left."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from agent.grammar.islands import format_island

TIME_SERVER = f"{sys.executable} -m mcp_server_time"
TOKYO = "What time is it in Tokyo?"
TROUBLE_SERVER = '''
import datetime
import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("trouble")


@server.tool(annotations=ToolAnnotations(readOnlyHint=False))
def write_mark(text: str) -> str:
    """Append text to the mark file (a side effect)."""
    with open(sys.argv[1], "a", encoding="utf-8") as f:
        f.write(text)
    return "written"


@server.tool()
def remind(moment: datetime.datetime) -> str:
    """A tool whose argument has a format the grammar cannot enforce: it is left out."""
    return "never"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def crash(code: int) -> str:
    """End the server in the middle of the call."""
    os._exit(3)


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def hang(seconds: int) -> str:
    """Never answer in time (and say so on the fifo, when there is one)."""
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w", encoding="utf-8") as fifo:
            fifo.write("hanging\\n")
    time.sleep(3600)
    return "late"


server.run()
'''


@pytest.fixture(scope="module")
def long_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 4096-token context: the system prompt lists the MCP tools too, and this
    tokenizer spends many tokens on their descriptions (rotary positions: only the limit changes)."""
    out = tmp_path_factory.mktemp("tiny-4k")
    for file in tiny_model_dir.iterdir():
        (out / file.name).write_bytes(file.read_bytes())
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    return out


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
    env.pop("AGENT_KB", None)
    return env


def agent(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          env=env_for(home), timeout=300)


def servers_running(marker: str) -> list[str]:
    """Command lines of live processes (zombies excluded) that contain `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(cmdline)
    return found


def direct_call(tool: str, args: dict[str, Any]) -> Any:
    """The time server's own answer, asked with the mcp client directly."""
    async def ask() -> Any:
        params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_server_time"])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool(tool, args)

    return asyncio.run(ask())


def server_schemas() -> dict[str, dict[str, Any]]:
    """The time server's tools and their input schemas, as it lists them to any client."""
    async def ask() -> dict[str, dict[str, Any]]:
        params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_server_time"])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return {tool.name: tool.input_schema for tool in (await session.list_tools()).tools}

    return asyncio.run(ask())


def same_answer(ours: Any, theirs: Any, where: str = "result") -> None:
    """Two answers of the time server are the same but for the clock moving on between the calls: every
    value equal, a date-time at most a minute later (and in the same offset)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), where
        for key in ours:
            same_answer(ours[key], theirs[key], f"{where}.{key}")
        return
    try:
        moments = datetime.fromisoformat(ours), datetime.fromisoformat(theirs)
    except (TypeError, ValueError):
        assert ours == theirs, where
        return
    assert timedelta(0) <= moments[1] - moments[0] < timedelta(minutes=1), where
    assert moments[0].utcoffset() == moments[1].utcoffset(), where


def run_json(done: subprocess.CompletedProcess[str], status: int = 0) -> dict[str, Any]:
    assert done.returncode == status, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def test_tools_list_shows_the_servers_tools_with_their_source(tmp_path: Path) -> None:
    tools = {t["name"]: t for t in run_json(agent("tools", "list", "--mcp", TIME_SERVER, "--json", home=tmp_path))}
    time_tool = tools["get_current_time"]
    assert time_tool["source"] == "MCP server python -m mcp_server_time".replace(
        "python", Path(sys.executable).name)
    assert time_tool["pure"] is True  # readOnlyHint: true
    assert [p["name"] for p in time_tool["params"]] == ["timezone"]
    table = agent("tools", "list", "--mcp", TIME_SERVER, home=tmp_path)
    assert table.returncode == 0 and "MCP server" in table.stdout and "get_current_time" in table.stdout
    assert not servers_running("mcp_server_time")


def test_a_server_that_cannot_start_is_a_clean_error(tmp_path: Path) -> None:
    done = agent("tools", "list", "--mcp", f"{sys.executable} -c 'import sys; sys.exit(3)'", home=tmp_path)
    assert done.returncode == 1 and "could not start" in done.stderr and "Traceback" not in done.stderr


def test_the_model_calls_the_time_server_and_its_real_answer_is_the_island(tmp_path: Path,
                                                                           long_model_dir: Path) -> None:
    done = agent("run", "What time is it in Tokyo?", "--mcp", TIME_SERVER, "--tool-choice", "get_current_time",
                 "--model", str(long_model_dir), "--max-new-tokens", "40", "--json", home=tmp_path)
    call = run_json(done)["tool_calls"][0]
    assert call["tool"] == "get_current_time" and isinstance(call["args"]["timezone"], str)  # schema-valid
    # a random model writes a random timezone: the server's answer is its error for that name
    direct = direct_call("get_current_time", call["args"])
    assert direct.is_error and call["error"] == direct.content[0].text
    assert f"=> error: {call['error'][:20]}" in run_json(done)["response"]
    assert not servers_running("mcp_server_time")


@pytest.fixture(scope="module")
def taught_model(long_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model trained on one example: asked the time in Tokyo (in the very prompt `agent run`
    builds, the time server's tools listed), it writes the server's tool. Untaught, a random model under
    `required` picks the built-ins' short forms (SEARCH, LOAD) or `note` in 60 of 60 sampled runs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agent.model.chat_format import render_prompt
    from agent.model.runtime import load_model
    from agent.tooling.mcp_client import McpHub
    from agent.tooling.mcp_config import from_command_line
    from agent.tooling.registry import ToolRegistry, build_registry
    from agent.turn import ChatSession

    home = tmp_path_factory.mktemp("taught-home")  # the built-in tools' descriptions depend on the home
    hub = McpHub()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AGENT_HOME", str(home))
        env.delenv("AGENT_KB", raising=False)
        try:
            registry = build_registry((), provided=ToolRegistry(hub.start(from_command_line(TIME_SERVER))))
            system = ChatSession(load_model(str(long_model_dir), device="cpu"), registry).messages
        finally:
            hub.close()
    tokenizer = AutoTokenizer.from_pretrained(long_model_dir)
    prompt = tokenizer.encode(render_prompt(tokenizer, system + [{"role": "user", "content": TOKYO}]))
    target = tokenizer.encode('CALL(get_current_time, timezone="Asia/Tokyo")\n')
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(long_model_dir)
    ids = torch.tensor([prompt + target])
    labels = ids.clone()
    labels[0, :len(prompt)] = -100  # learn the call only
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):  # until the call is near certain (about 100 steps)
        loss = model(input_ids=ids, labels=labels).loss
        if loss.item() < 0.01:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01
    out = tmp_path_factory.mktemp("tiny-taught")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, home


def test_required_calls_a_server_tool_with_valid_arguments_and_writes_its_real_answer(
        taught_model: tuple[Path, Path]) -> None:
    """The issue's acceptance command: whichever tool the model called, it is the server's, its arguments
    are valid under the server's own input schema, and the island is the server's own answer to them."""
    model, home = taught_model
    result = run_json(agent("run", TOKYO, "--mcp", TIME_SERVER, "--tool-choice", "required", "--model",
                            str(model), "--max-new-tokens", "80", "--json", home=home))
    call = result["tool_calls"][0]
    schemas = server_schemas()
    assert call["tool"] in schemas, call
    jsonschema.validate(call["args"], schemas[call["tool"]])
    direct = direct_call(call["tool"], call["args"])
    assert call["error"] is None and not direct.is_error, call
    same_answer(json.loads(call["result"]), json.loads(direct.content[0].text))
    assert format_island(call["result"]) in result["response"] and result["saved"] is True
    assert not servers_running("mcp_server_time")


def test_a_json_schema_narrows_the_servers_tool_and_the_server_runs_it(tmp_path: Path,
                                                                       long_model_dir: Path) -> None:
    described = tmp_path / "time.json"
    described.write_text(json.dumps([{"type": "function", "function": {
        "name": "get_current_time", "description": "Current time in a timezone.",
        "parameters": {"type": "object", "required": ["timezone"],
                       "properties": {"timezone": {"enum": ["Asia/Tokyo", "Europe/Paris"]}}}}}]))
    result = run_json(agent("run", "What time is it in Tokyo?", "--mcp", TIME_SERVER, "--tools", str(described),
                            "--tool-choice", "get_current_time", "--model", str(long_model_dir),
                            "--max-new-tokens", "40", "--json", home=tmp_path))
    call = result["tool_calls"][0]
    assert call["error"] is None and call["args"]["timezone"] in ("Asia/Tokyo", "Europe/Paris")
    answer = json.loads(call["result"])
    direct = direct_call("get_current_time", call["args"]).structured_content
    # time moves on between the two calls; the timezone and its offset do not
    assert answer["timezone"] == direct["timezone"] == call["args"]["timezone"]
    assert answer["datetime"][-6:] == direct["datetime"][-6:] and answer["is_dst"] == direct["is_dst"]
    assert "=> {" in result["response"] and result["saved"] is True
    assert not servers_running("mcp_server_time")


def test_chat_stops_the_server_at_end_of_input(tmp_path: Path, long_model_dir: Path) -> None:
    """Ctrl-D (end of input) ends the REPL; the server ends with it."""
    done = subprocess.run([sys.executable, "-m", "agent.cli", "chat", "--mcp", TIME_SERVER, "--model",
                           str(long_model_dir)], input="/tools\n", capture_output=True, text=True,
                          env=env_for(tmp_path), timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "get_current_time" in done.stdout
    assert not servers_running("mcp_server_time")


@pytest.fixture()
def trouble_home(tmp_path: Path) -> tuple[Path, Path]:
    """An agent home whose config.json starts the trouble server with a 2-second call timeout."""
    script = tmp_path / "trouble_server.py"
    script.write_text(TROUBLE_SERVER, encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"mcpServers": {"trouble": {
        "command": sys.executable, "args": [str(script), str(tmp_path / "mark.txt")], "timeout": 2}}}))
    return home, tmp_path / "mark.txt"


@pytest.mark.parametrize(("tool", "island"), [
    ("write_mark", "write_mark has side effects and was not run"),  # no --yes
    ("crash", "crash failed: MCP server 'trouble'"),
    ("hang", "hang timed out after 2 s"),
])
def test_side_effects_crashes_and_hangs_become_error_islands(trouble_home: tuple[Path, Path], long_model_dir: Path,
                                                             tool: str, island: str) -> None:
    home, mark = trouble_home
    done = agent("run", "Go.", "--tool-choice", tool, "--model", str(long_model_dir),
                 "--max-new-tokens", "30", "--max-tool-calls", "1", "--json", home=home)
    result = run_json(done, status=3 if tool == "write_mark" else 0)  # 3: a side effect was refused
    assert ("warning: MCP server 'trouble': tool \"remind\": inputSchema.properties.moment: "
            "\"format\" is not supported; the tool is left out") in done.stderr
    first = result["tool_calls"][0]
    assert first["tool"] == tool and island in first["error"], first
    assert f"=> error: {island}" in result["response"]
    assert result["saved"] is True and result["session_id"]
    assert not mark.exists()  # nothing ran that had a side effect
    assert not servers_running("trouble_server.py")


def test_a_side_effect_runs_with_yes(trouble_home: tuple[Path, Path], long_model_dir: Path) -> None:
    home, mark = trouble_home
    result = run_json(agent("run", "Go.", "--tool-choice", "write_mark", "--yes", "--model", str(long_model_dir),
                            "--max-new-tokens", "30", "--max-tool-calls", "1", "--json", home=home))
    first = result["tool_calls"][0]
    assert first["result"] == "written" and mark.read_text() == first["args"]["text"]
    assert not servers_running("trouble_server.py")


def test_sigterm_during_a_hung_call_stops_the_server(trouble_home: tuple[Path, Path], long_model_dir: Path,
                                                     tmp_path: Path) -> None:
    home, mark = trouble_home
    fifo = tmp_path / "hanging.fifo"
    os.mkfifo(fifo)
    config = json.loads((home / "config.json").read_text())
    server = config["mcpServers"]["trouble"]
    server["args"].append(str(fifo))
    server["timeout"] = 600  # the call would wait ten minutes: only SIGTERM ends it
    (home / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "Go.", "--tool-choice", "hang", "--model",
                             str(long_model_dir), "--max-new-tokens", "30", "--json"],
                            env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with open(fifo, encoding="utf-8") as hanging:  # blocks until the tool is running
            assert hanging.readline() == "hanging\n"
        assert servers_running("trouble_server.py")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    assert not servers_running("trouble_server.py")
