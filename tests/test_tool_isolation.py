"""Tools run in worker processes: killed at their timeout, even while holding the GIL; Ctrl-C stops
them; their printed output lands in the call record; odd text and exits become error islands."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.grammar.constraint import make_constraint
from agent.tooling.registry import ToolRegistry
from agent.tooling.runner import ToolRunner
from agent.tooling.spec import ToolError, ToolFailure, spec_of, tool
from constraint_script import Script

seen_here: list[str] = []


@tool(timeout=1.0)
def catastrophic_regex(n: int) -> str:
    """Backtracks for ages inside the regex engine, which keeps the GIL the whole time."""
    return str(re.match(r"(a+)+$", "a" * n + "!"))


@tool(timeout=1.0)
def big_power(exponent: int) -> str:
    """One long C-level computation that keeps the GIL."""
    return str((7 ** exponent) % 10)


@tool(timeout=1.0)
def spin() -> str:
    """A Python loop that never ends."""
    while True:
        pass


@tool(pure=False, timeout=1.0)
def late_write(path: str) -> str:
    """Records its process id, keeps the CPU busy for 2 s, then writes a file (a side effect)."""
    Path(path + ".pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        pass
    Path(path).write_text("written after the timeout")
    return "wrote"


@tool(timeout=1.0)
def hang_pure(log: str) -> str:
    """A pure tool that appends a line to a log each time it really runs, then hangs."""
    with open(log, "a") as fh:
        fh.write("ran\n")
    while True:
        pass


@tool(timeout=60.0)
def wait_for_interrupt(ready_fd: int) -> str:
    """Tells the test its process id, then waits far longer than the test does."""
    os.write(ready_fd, str(os.getpid()).encode() + b"\n")
    time.sleep(60)
    return "never"


@tool
def chatty(text: str) -> str:
    """Prints to stdout and stderr (Python and file-descriptor level) and returns the text."""
    print("printed", text)
    print("to stderr", file=sys.stderr)
    os.write(1, b"raw fd 1\n")
    return text


@tool
def remember(text: str) -> str:
    """Changes this test module's memory (only visible here when run in this process)."""
    seen_here.append(text)
    return "ok"


@tool(in_process=True)
def remember_in_process(text: str) -> str:
    """The same, opted in to run in the agent's own process."""
    seen_here.append(text)
    print("in-process print")
    return "ok"


@tool
def surrogate(where: str) -> str:
    """Returns or raises text with a lone surrogate in it."""
    if where == "error":
        raise ToolFailure("bad \ud800 error")
    if where == "output":
        print("out \udfff put")
        return "fine"
    return "x\ud800y"


@tool
def exits(code: int) -> str:
    """Calls sys.exit."""
    sys.exit(code)


@tool
def dies(code: int) -> str:
    """Ends its process without an answer."""
    os._exit(code)


def registry() -> ToolRegistry:
    reg = ToolRegistry()
    for func in (catastrophic_regex, big_power, spin, late_write, hang_pure, wait_for_interrupt, chatty,
                 remember, remember_in_process, surrogate, exits, dies):
        reg.register(func)
    return reg


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("name, args", [
    ("catastrophic_regex", {"n": 64}),
    ("big_power", {"exponent": 10 ** 9}),
    ("spin", {}),
])
def test_a_gil_holding_tool_times_out_within_1_5_s(name: str, args: dict) -> None:
    threads_before = threading.active_count()
    started = time.perf_counter()
    record = ToolRunner(registry()).run(name, args)
    assert time.perf_counter() - started < 1.5
    assert record.error == f"{name} timed out after 1 s" and record.result is None
    assert threading.active_count() == threads_before  # nothing left behind to slow later turns


def test_a_timed_out_side_effect_tool_is_killed_and_never_writes(tmp_path: Path) -> None:
    target = tmp_path / "side-effect.txt"
    runner = ToolRunner(registry(), confirm=lambda record: True)
    started = time.perf_counter()
    record = runner.run("late_write", {"path": str(target)})
    assert time.perf_counter() - started < 1.5
    assert record.error == "late_write timed out after 1 s"
    pid = int((tmp_path / "side-effect.txt.pid").read_text())
    assert pid != os.getpid()  # it ran in a worker process ...
    assert not process_exists(pid)  # ... which is gone: it can never write the file
    assert not target.exists()


def test_a_timed_out_pure_call_is_cached_for_the_turn(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    runner = ToolRunner(registry())
    first = runner.run("hang_pure", {"log": str(log)})
    started = time.perf_counter()
    second = runner.run("hang_pure", {"log": str(log)})
    assert time.perf_counter() - started < 0.5
    assert first.error == second.error == "hang_pure timed out after 1 s"
    assert log.read_text() == "ran\n"
    # a new turn (a new runner) tries again
    ToolRunner(registry()).run("hang_pure", {"log": str(log)})
    assert log.read_text() == "ran\nran\n"


def test_a_hanging_pure_tool_runs_once_across_search_branches(tiny_lm, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a short relative path: the call is generated within 60 tokens
    log = tmp_path / "runs.log"
    prompt = tiny_lm.tokenizer.encode("<|user|>\nhello\n<|assistant|>\n")
    constraint = make_constraint(tiny_lm, registry(), defer_side_effects=True)
    branches = [constraint.fork() for _ in range(3)]
    started = time.perf_counter()
    for branch in branches:
        decode(tiny_lm, prompt, DecodeConfig(max_new_tokens=60),
               constraint=Script(branch, 'CALL(hang_pure, log="runs.log")'))
    assert time.perf_counter() - started < 2 * 1.5  # one timeout, not three
    assert log.read_text() == "ran\n"
    assert all(b.tool_calls[0].error == "hang_pure timed out after 1 s" for b in branches)


def test_ctrl_c_while_a_tool_runs_stops_it() -> None:
    read_fd, write_fd = os.pipe()
    tool_pid: list[int] = []

    def press_ctrl_c() -> None:
        with os.fdopen(read_fd) as ready:
            tool_pid.append(int(ready.readline()))
        os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=press_ctrl_c)
    helper.start()
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            ToolRunner(registry()).run("wait_for_interrupt", {"ready_fd": write_fd})
    finally:
        os.close(write_fd)
        helper.join()
    assert time.perf_counter() - started < 10
    assert tool_pid and tool_pid[0] != os.getpid() and not process_exists(tool_pid[0])


def test_printed_output_goes_to_the_record_not_the_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    record = ToolRunner(registry()).run("chatty", {"text": "hello"})
    assert record.result == "hello"
    assert "printed hello\n" in record.output and "to stderr\n" in record.output and "raw fd 1\n" in record.output
    assert record.to_dict()["output"] == record.output
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_tools_run_in_a_worker_unless_they_opt_in_to_the_agent_process(capfd: pytest.CaptureFixture[str]) -> None:
    seen_here.clear()
    runner = ToolRunner(registry())
    assert runner.run("remember", {"text": "worker"}).result == "ok"
    assert seen_here == []  # the worker's memory is its own
    record = runner.run("remember_in_process", {"text": "here"})
    assert record.result == "ok" and seen_here == ["here"]
    assert record.output == "in-process print\n"
    assert capfd.readouterr() == ("", "")
    spec = spec_of(remember_in_process)
    assert spec is not None and spec.in_process and spec.to_json()["in_process"] is True


def test_without_fork_tools_run_in_process_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")  # as on Windows
    seen_here.clear()
    with pytest.warns(RuntimeWarning, match="no os.fork.*cannot be stopped"):
        record = ToolRunner(registry()).run("remember", {"text": "no fork"})
    assert record.result == "ok" and seen_here == ["no fork"]


@pytest.mark.parametrize("where, field, expected", [
    ("result", "result", "x\ufffdy"),
    ("error", "error", "bad \ufffd error"),
    ("output", "output", "out \\udfff put\n"),  # printed through a UTF-8 stream: shown escaped
])
def test_lone_surrogates_become_replacement_characters(where: str, field: str, expected: str) -> None:
    record = ToolRunner(registry()).run("surrogate", {"where": where})
    assert getattr(record, field) == expected
    record.island_text.encode("utf-8")  # valid UTF-8: the turn can be stored and shown
    assert expected.rstrip("\n") in record.island_text or field == "output"


def test_sys_exit_or_a_dying_process_inside_a_tool_is_an_error_island() -> None:
    runner = ToolRunner(registry())
    record = runner.run("exits", {"code": 0})
    assert record.error == "exits called sys.exit(0) instead of returning a result"
    assert record.island_text == "\n=> error: exits called sys.exit(0) instead of returning a result\n"
    record = runner.run("dies", {"code": 3})
    assert record.error == "dies ended its process (exit status 3) without returning a result"


def test_sys_exit_in_a_tools_file_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "quits.py"
    file.write_text("import sys\nprint('hello from import')\nsys.exit(0)\n")
    with pytest.raises(ToolError, match="quits.py.*called sys.exit"):
        ToolRegistry().load_file(file)
    result = CliRunner().invoke(main, ["tools", "list", "--tools", str(file)])
    assert result.exit_code != 0
    assert "called sys.exit(0)" in result.output and "Traceback" not in result.output
