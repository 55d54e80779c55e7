"""Context management with the demo model (512 positions): long REPL sessions stay sensible, a message
too long for the context is refused before decoding, and the REPL shows how full the context is."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from agent.config import DecodeConfig
from agent.context import ContextOverflowError, context_length
from agent.demo_model import demo_model_dir
from agent.model.runtime import LoadedModel, load_model
from agent.repl import Repl
from agent.sessions.store import SessionStore
from agent.tooling.registry import default_registry
from agent.turn import ChatSession

FIXED = "What is 12 * 12?"
OTHERS = ["What is the capital of Webei?", "What is 1234 * 5678?", "Tell me about Webei.", "What is 17 + 25?"]


@pytest.fixture(scope="module")
def demo_lm() -> LoadedModel:
    return load_model(str(demo_model_dir()), device="cpu")


def run_repl(session: ChatSession, lines: list[str]) -> str:
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("".join(line + "\r" for line in lines) + "/exit\r")
        Repl(session, input=pipe, output=DummyOutput(), out=out, history=InMemoryHistory()).run()
    return out.getvalue()


def test_the_demo_models_context_length_comes_from_its_config(demo_lm: LoadedModel) -> None:
    assert context_length(demo_lm) == 512


def test_twenty_turns_stay_sensible_and_a_huge_paste_is_refused(demo_lm: LoadedModel, agent_home: Path) -> None:
    store = SessionStore.open(agent_home / "sessions.db")
    session = ChatSession(demo_lm, default_registry(), DecodeConfig(), confirm=lambda record: False, store=store)
    questions = [OTHERS[0], FIXED] + [OTHERS[i % len(OTHERS)] for i in range(17)] + [FIXED]
    paste = "word " * 4000  # 20 KB
    text = run_repl(session, questions[:10] + [paste] + questions[10:] + ["/context"])
    assert "Traceback" not in text
    assert session.turn_index == 20  # the paste was not taken as a turn
    answers = [m["content"] for m in session.messages if m["role"] == "assistant"]
    assert "144" in answers[1] and "144" in answers[19]
    assert answers[1].rsplit("\n", 1)[-1] == answers[19].rsplit("\n", 1)[-1]
    # the paste: refused with the token counts, before anything was decoded or stored
    assert "the message is too long for the model's context" in text and "the context is 512 tokens" in text
    assert all(paste.strip() not in m["content"] for m in session.messages)
    stored = SessionStore.open(agent_home / "sessions.db").history(session.session_id)  # the REPL closed its store
    assert sum(1 for m in stored if m["role"] == "user") == 20
    # trimming was announced, and every answer says how full the context is
    assert "context 512 tokens: " in text and "left out" in text
    assert text.count("/512 tokens") == 20
    # /context details it
    assert "system prompt" in text and "turn 20" in text and "room left" in text


def test_a_message_longer_than_the_context_raises_before_anything_is_stored(demo_lm: LoadedModel,
                                                                            agent_home: Path) -> None:
    store = SessionStore.open(agent_home / "sessions.db")
    session = ChatSession(demo_lm, default_registry(), DecodeConfig(), store=store)
    with pytest.raises(ContextOverflowError, match=r"\d+-token prompt, and the context is 512 tokens"):
        session.ask("word " * 4000)
    assert session.session_id is None and session.turn_index == 0
    assert store.list_sessions() == []
    session.close()
