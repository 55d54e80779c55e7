"""The side-effect confirmation in the REPL, with the demo model (which calls `note` for "Take a note: ...")
and prompt_toolkit's pipe input: one key answers it, Enter is the default (no), and the message typed
next is answered as a message, never eaten by the confirmation."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from agent.config import DecodeConfig
from agent.confirm import ask_confirmation
from agent.demo_model import demo_model_dir
from agent.model.runtime import LoadedModel, load_model
from agent.repl import Repl
from agent.tooling.registry import default_registry
from agent.turn import ChatSession

# what has been streamed when the runner asks: the constraint runs the call at its closing quote
CALL = 'CALL(note, text="buy milk'


@pytest.fixture(scope="module")
def demo_lm() -> LoadedModel:
    return load_model(str(demo_model_dir()), device="cpu")


def run_repl(lm: LoadedModel, keys: str) -> tuple[ChatSession, str]:
    # the confirmation chat gives every session: the REPL asks on its own input and output
    session = ChatSession(lm, default_registry(), DecodeConfig(), confirm=ask_confirmation)
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        Repl(session, input=pipe, output=DummyOutput(), out=out, history=InMemoryHistory()).run()
    return session, out.getvalue()


@pytest.mark.parametrize("answer", ["\r", "\x1b", "n"], ids=["enter-is-the-default", "esc", "n"])
def test_a_refused_call_keeps_the_next_message(demo_lm: LoadedModel, agent_home: Path, answer: str) -> None:
    session, text = run_repl(demo_lm, f"Take a note: buy milk\r{answer}What is 5 * 5?\r/exit\r")
    assert session.turn_index == 2  # the second message was answered as a message
    assert session.messages[3]["content"] == "What is 5 * 5?"
    assert "25" in session.messages[4]["content"]
    # the call stays as streamed, the question on its own line below it
    assert f"{CALL}\nRun note(text='buy milk')? It has side effects.\nno, not run\n" in text
    # the refusal is the call's island; nothing was written
    assert "=> error: note was not run: the user declined" in session.messages[2]["content"]
    assert not (agent_home / "notes.txt").exists()


def test_y_runs_the_call_and_the_next_message_is_answered(demo_lm: LoadedModel, agent_home: Path) -> None:
    session, text = run_repl(demo_lm, "Take a note: buy milk\ryWhat is 5 * 5?\r/exit\r")
    assert f"{CALL}\nRun note(text='buy milk')? It has side effects.\nyes, running it\n" in text
    assert (agent_home / "notes.txt").read_text().strip().endswith("buy milk")
    assert session.turn_index == 2 and "25" in session.messages[4]["content"]


def test_the_time_stored_for_a_call_is_the_tools_not_the_persons(demo_lm: LoadedModel, agent_home: Path) -> None:
    waited = 1.0

    def slow_person(record: object) -> bool:
        time.sleep(waited)  # a person reading the question before answering yes
        return True

    session = ChatSession(demo_lm, default_registry(), DecodeConfig(), confirm=slow_person)
    result = session.ask("Take a note: buy milk")
    (call,) = result.tool_calls
    assert call.tool == "note" and call.error is None
    assert call.seconds < waited / 2  # writing a line to a file, without the second spent deciding
