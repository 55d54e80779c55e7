"""`agent chat` on a real terminal (a pseudo-terminal): answers are drawn as Markdown, and `--plain` keeps
them as the plain text the model wrote, streamed once with no redrawing."""

from __future__ import annotations

from pathlib import Path

from terminal import chat_on_a_terminal

CALL = b'CALL(calc, expr="12 * 12")'


def test_answers_are_drawn_as_markdown_on_a_terminal(tmp_path: Path) -> None:
    seen = chat_on_a_terminal(tmp_path)
    assert b"\x1b[1;33m" + CALL in seen  # the call line styled as the REPL styles calls
    assert b"The answer is 144." in seen
    assert b"Traceback" not in seen


def test_plain_streams_the_answer_once_as_written(tmp_path: Path) -> None:
    seen = chat_on_a_terminal(tmp_path, "--plain")
    assert seen.count(CALL) == 1  # streamed once, never redrawn
    assert CALL + b"\r\n=> 144\r\nThe answer is 144." in seen  # no styling inside the answer
    assert b"Traceback" not in seen
