"""ChatSession: history across turns, the cached prefix reused, the plain template for base models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import DecodeConfig
from agent.model.chat_format import PLAIN_STOP, render_prompt
from agent.model.runtime import load_model
from agent.turn import ChatSession
from tiny_model import build_tiny_llama


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


@pytest.mark.parametrize("strategy", ["tree", "beam", "best-of-n", "mcmc"])
def test_a_search_runs_its_prompt_on_the_last_turns_cache_and_leaves_its_own(tiny_lm, strategy: str) -> None:
    config = DecodeConfig(max_new_tokens=8)
    session = ChatSession(tiny_lm, None, config)
    first = session.ask("hello")
    session.set_config(replace(config, strategy=strategy, budget=24))
    second = session.ask("and again")
    # the first turn's prompt and answer came from the cache rather than being recomputed
    assert second.reused_prompt_tokens >= first.prompt_tokens + first.new_tokens - 1
    assert second.prompt_tokens > second.reused_prompt_tokens
    fresh = ChatSession(tiny_lm, None, replace(config, strategy=strategy, budget=24))
    fresh.messages = session.messages[:2]
    alone = fresh.ask("and again")
    assert alone.reused_prompt_tokens == 0
    assert alone.response == second.response  # the same search, the same answer
    session.set_config(config)
    third = session.ask("once more")  # greedy again, on the prompt the search left in the cache
    assert third.reused_prompt_tokens >= second.prompt_tokens


def test_model_without_chat_template_uses_the_plain_template(tmp_path: Path) -> None:
    model_dir = build_tiny_llama(tmp_path / "base", chat_template=False)
    lm = load_model(str(model_dir), device="cpu")
    text = render_prompt(lm.tokenizer, [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "### System\nS\n\n### User\nU\n\n### Assistant\n"
    session = ChatSession(lm, None, DecodeConfig(max_new_tokens=6))
    result = session.ask("hi")
    assert PLAIN_STOP not in result.response
    assert result.new_tokens <= 6


def test_each_turn_stores_the_hash_of_the_grammar_its_masks_came_from(tiny_lm, tmp_path: Path) -> None:
    from agent.sessions.store import SessionStore
    from agent.tooling.registry import default_registry

    store = SessionStore.open(tmp_path / "s.sqlite")
    hashes = []
    for strategy in ("greedy", "beam"):
        session = ChatSession(tiny_lm, default_registry(), DecodeConfig(strategy=strategy, max_new_tokens=6),
                              store=store)
        hashes.append(session.ask("hi").grammar_hash)
    free = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=4), store=store).ask("hi")
    assert hashes[0] == hashes[1] and len(hashes[0]) == 16
    assert free.grammar_hash is None
    stored = [t["grammar_hash"] for sid in [r["id"] for r in store.list_sessions()] for t in store.turn_records(sid)]
    assert sorted(stored, key=str) == sorted([hashes[0], hashes[0], None], key=str)
