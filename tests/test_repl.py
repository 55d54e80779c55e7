"""The REPL driven through prompt_toolkit's pipe input: answers, slash commands, Ctrl-C, history."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from agent.config import DecodeConfig
from agent.repl import Repl, SlashCompleter
from agent.turn import ChatSession


class InterruptingOut(io.StringIO):
    """Sends the process a real SIGINT (Ctrl-C) after a few streamed pieces of an answer."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.pieces = 0

    def write(self, text: str) -> int:
        self.pieces += 1
        if self.pieces == self.after:
            os.kill(os.getpid(), signal.SIGINT)
        return super().write(text)


def drive(tiny_lm, keys: str, out: io.StringIO, history_file: Path, config: DecodeConfig | None = None) -> ChatSession:
    session = ChatSession(tiny_lm, None, config or DecodeConfig(max_new_tokens=200))
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        repl = Repl(session, input=pipe, output=DummyOutput(), out=out, history=FileHistory(str(history_file)))
        repl.run()
    return session


def test_answers_and_slash_commands(tiny_lm, tmp_path: Path) -> None:
    out = io.StringIO()
    session = drive(tiny_lm, "hello\r/set temperature=0.5\r/set strategy=sample\r/help\r/model\r/exit\r", out,
                    tmp_path / "history", DecodeConfig(max_new_tokens=8))
    text = out.getvalue()
    assert session.turn_index == 1
    assert session.messages[-1]["role"] == "assistant" and session.messages[-1]["content"] in text
    assert "8 tokens" in text
    assert session.config.temperature == 0.5 and session.config.strategy == "sample"
    assert "/resume" in text and "Esc then Enter" in text  # /help
    assert str(tiny_lm.model_id) in text  # /model


@pytest.fixture
def sigint_raises():
    """As in a terminal: a shell that started the tests in the background may have set SIGINT to be
    ignored, and Python then never turns it into KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_generation_and_returns_to_prompt(tiny_lm, tmp_path: Path, sigint_raises) -> None:
    out = InterruptingOut(after=5)
    history = tmp_path / "history"
    session = drive(tiny_lm, "hello\rsecond question\r/exit\r", out, history, DecodeConfig(max_new_tokens=200))
    text = out.getvalue()
    assert "[interrupted]" in text
    # the REPL went on: the second question was answered after the interrupted one
    assert session.turn_index == 2
    assert [m["role"] for m in session.messages[-4:]] == ["user", "assistant", "user", "assistant"]
    assert session.last_result is not None and not session.last_result.interrupted
    # history kept both lines
    lines = history.read_text()
    assert "+hello" in lines and "+second question" in lines


def test_ctrl_c_at_prompt_and_ctrl_d_exit(tiny_lm, tmp_path: Path) -> None:
    out = io.StringIO()
    session = drive(tiny_lm, "half typed\x03\x04", out, tmp_path / "history")
    assert session.turn_index == 0  # Ctrl-C discarded the line, Ctrl-D left


def test_multiline_input_with_escape_enter(tiny_lm, tmp_path: Path) -> None:
    out = io.StringIO()
    session = drive(tiny_lm, "line one\x1b\rline two\r/exit\r", out, tmp_path / "history",
                    DecodeConfig(max_new_tokens=4))
    user = [m["content"] for m in session.messages if m["role"] == "user"]
    assert user == ["line one\nline two"]


def test_completion_of_slash_commands() -> None:
    completer = SlashCompleter(lambda: ["calc", "search"])
    words = [c.text for c in completer.get_completions(Document("/re"), CompleteEvent())]
    assert words == ["/resume", "/retry"]
    tools = [c.text for c in completer.get_completions(Document("CALL(ca"), CompleteEvent())]
    assert tools == ["calc"]


def test_sessions_and_resume_in_the_repl(tiny_lm, tmp_path: Path) -> None:
    from agent.sessions.store import SessionStore

    store = SessionStore.open(tmp_path / "sessions.sqlite")
    first = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=5), store=store)
    first.ask("remember this")
    session_id = first.session_id
    out = io.StringIO()
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=5), store=store)
    with create_pipe_input() as pipe:
        pipe.send_text(f"/sessions\r/resume {session_id[:6]}\rand more\r/exit\r")
        Repl(session, input=pipe, output=DummyOutput(), out=out, history=FileHistory(str(tmp_path / "h"))).run()
    text = out.getvalue()
    assert session_id in text and f"resumed {session_id}" in text
    assert session.session_id == session_id
    stored = [m["text"] for m in SessionStore.open(tmp_path / "sessions.sqlite").messages(session_id)]
    assert stored[:1] == ["remember this"] and "and more" in stored


def test_set_warns_when_the_strategy_ignores_the_setting(tiny_lm, tmp_path: Path) -> None:
    out = io.StringIO()
    drive(tiny_lm, "/set temperature=0.7\r/set strategy=sample\r/exit\r", out, tmp_path / "history")
    lines = out.getvalue().splitlines()
    warned = [line for line in lines if line.startswith("warning: temperature does not apply to the greedy")]
    assert len(warned) == 1  # under greedy, not after switching to sample


def test_a_read_only_home_keeps_the_history_in_memory(tiny_lm, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "repl_history").mkdir()  # the history file cannot be opened for appending
    monkeypatch.setenv("AGENT_HOME", str(home))
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=4))
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("hello\r/exit\r")
        Repl(session, input=pipe, output=DummyOutput(), out=out).run()
    text = out.getvalue()
    assert "history is not kept" in text and "Traceback" not in text and "Press ENTER" not in text
    assert session.turn_index == 1
