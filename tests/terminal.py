"""Programs on a real terminal (a pseudo-terminal), for tests of what a person sees: `agent chat` answering
one question, and `agent run` with its stderr on a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def _terminal_env(home: Path) -> dict[str, str]:
    return {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "TERM": "xterm", "COLUMNS": "100",
            "LINES": "40"}


def _received(leader: int, program: str) -> Iterator[bytes]:
    """What the terminal receives, chunk by chunk, until the program closes it (it exited)."""
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        assert ready, f"{program} went quiet: {seen[-300:]!r}"
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal: it exited
            return
        if not chunk:
            return
        seen += chunk
        yield chunk


def chat_on_a_terminal(home: Path, *options: str) -> bytes:
    """Everything the terminal received while the REPL answered one question and exited. Input is sent
    when the output shows the REPL waiting for it (its prompt), not after a delay."""
    leader, follower = pty.openpty()
    env = _terminal_env(home)
    child = subprocess.Popen([sys.executable, "-m", "agent.cli", "chat", "--no-save", *options], stdin=follower,
                             stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    seen, asked, left = b"", False, False
    try:
        for chunk in _received(leader, "the REPL"):
            seen += chunk
            if not asked and b">" in seen:
                os.write(leader, b"What is 12 * 12?\r")
                asked = True
            elif asked and not left and b"tok/s" in seen:  # the line after the answer
                os.write(leader, b"/exit\r")
                left = True
    finally:
        os.close(leader)
        child.wait(timeout=60)
    assert child.returncode == 0, seen[-500:]
    return seen


def run_with_stderr_on_a_terminal(home: Path, *args: str) -> tuple[bytes, bytes, int]:
    """`agent run ARGS` with stdout a pipe and stderr a terminal: (stdout, what the terminal received, exit code)."""
    leader, follower = pty.openpty()
    child = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--no-save", *args],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower, env=_terminal_env(home),
                             close_fds=True)
    os.close(follower)
    terminal = b""
    try:
        terminal = b"".join(_received(leader, "agent run"))
    finally:
        os.close(leader)
        assert child.stdout is not None
        out = child.stdout.read()
        child.wait(timeout=60)
    return out, terminal, child.returncode
