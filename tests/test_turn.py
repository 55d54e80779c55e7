"""ChatSession: history across turns, the cached prefix reused, the plain template for base models."""

from __future__ import annotations

from pathlib import Path

from agent.chat_format import PLAIN_STOP, render_prompt
from agent.config import DecodeConfig
from agent.model_runtime import load_model
from agent.tiny_model import build_tiny_llama
from agent.turn import ChatSession


def test_second_turn_reuses_the_first_turns_cache(tiny_lm) -> None:
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=10))
    first = session.ask("hello")
    second = session.ask("and again")
    assert first.new_tokens == 10 and second.new_tokens == 10
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    # the whole first prompt came from the cache rather than being recomputed
    assert first.reused_prompt_tokens == 0
    assert second.reused_prompt_tokens >= first.prompt_tokens
    fresh = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=10))
    fresh.messages = session.messages[:2]
    assert fresh.ask("and again").response == second.response


def test_model_without_chat_template_uses_the_plain_template(tmp_path: Path) -> None:
    model_dir = build_tiny_llama(tmp_path / "base", chat_template=False)
    lm = load_model(str(model_dir), device="cpu")
    text = render_prompt(lm.tokenizer, [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "### System\nS\n\n### User\nU\n\n### Assistant\n"
    session = ChatSession(lm, None, DecodeConfig(max_new_tokens=6))
    result = session.ask("hi")
    assert PLAIN_STOP not in result.response
    assert result.new_tokens <= 6
