"""`agent chat` on a real terminal (a pseudo-terminal): answers are drawn as Markdown, and `--plain` keeps
them as the plain text the model wrote, streamed once with no redrawing."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

CALL = b'CALL(calc, expr="12 * 12")'


def _chat_on_a_terminal(home: Path, *options: str) -> bytes:
    """Everything the terminal received while the REPL answered one question and exited. Input is sent
    when the output shows the REPL waiting for it (its prompt), not after a delay."""
    leader, follower = pty.openpty()
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "TERM": "xterm", "COLUMNS": "100",
           "LINES": "40"}
    child = subprocess.Popen([sys.executable, "-m", "agent.cli", "chat", "--no-save", *options], stdin=follower,
                             stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    seen, asked, left = b"", False, False
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            assert ready, f"the REPL went quiet: {seen[-300:]!r}"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal: it exited
                break
            if not chunk:
                break
            seen += chunk
            if not asked and b">" in seen:
                os.write(leader, b"What is 12 * 12?\r")
                asked = True
            elif asked and not left and b"tokens in" in seen:  # the line after the answer
                os.write(leader, b"/exit\r")
                left = True
    finally:
        os.close(leader)
        child.wait(timeout=60)
    assert child.returncode == 0, seen[-500:]
    return seen


def test_answers_are_drawn_as_markdown_on_a_terminal(tmp_path: Path) -> None:
    seen = _chat_on_a_terminal(tmp_path)
    assert b"\x1b[1;33m" + CALL in seen  # the call line styled as the REPL styles calls
    assert b"The answer is 144." in seen
    assert b"Traceback" not in seen


def test_plain_streams_the_answer_once_as_written(tmp_path: Path) -> None:
    seen = _chat_on_a_terminal(tmp_path, "--plain")
    assert seen.count(CALL) == 1  # streamed once, never redrawn
    assert CALL + b"\r\n=> 144\r\nThe answer is 144." in seen  # no styling inside the answer
    assert b"Traceback" not in seen
