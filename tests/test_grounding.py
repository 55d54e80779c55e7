"""A call's numbers lean to the numbers the conversation wrote (agent.decoding.grounding, --ground-numbers).

SmolLM2 copied the worked example's 12 into `calc(expr="12 * 48")` for "23 boxes with 48 apples each". The
model here is the tiny random Llama with a liking for the digit "1" added to its logits (smaller than the
penalty): without grounding its calls are full of 1s; grounded, a question without a 1 gets calls without one.
"""

from __future__ import annotations

import pytest
import torch

from agent.config import DecodeConfig
from agent.decoding.grounding import GROUNDING_PENALTY, Grounding, NumberTable, numbers_in
from agent.model.runtime import LoadedModel
from agent.tooling import tool
from agent.tooling.registry import ToolRegistry, default_registry
from agent.turn import ChatSession
from tiny_model import favouring_lm

QUESTION = "What is 23 * 48?"


@pytest.fixture(scope="module")
def one_lm(tiny_model_dir) -> LoadedModel:
    return favouring_lm(tiny_model_dir, "1", 3.0, "likes-one")


@tool
def note_down(text: str) -> str:
    """Write the text down (any text: calc's own language would keep out most of what a random model writes)."""
    return "noted"


def _call_text(lm: LoadedModel, strategy: str, ground: str) -> str:
    config = DecodeConfig(strategy=strategy, tool_choice="note_down", max_new_tokens=24, budget=24,
                          ground_numbers=ground)
    registry = ToolRegistry()  # alone: the tiny model's context holds no more tools and their examples
    registry.register(note_down)
    result = ChatSession(lm, registry, config, confirm=lambda call: False).ask(QUESTION)
    assert result.tool_calls, result.response
    return result.tool_calls[0].call_text


@pytest.mark.parametrize("strategy", ["greedy", "tree"])
def test_grounded_calls_leave_out_the_number_the_model_likes_but_nobody_wrote(one_lm: LoadedModel,
                                                                              strategy: str) -> None:
    assert "1" in _call_text(one_lm, strategy, "off")  # the liking shows without grounding
    grounded = _call_text(one_lm, strategy, "on")
    assert "1" not in grounded, grounded


def test_the_bias_follows_the_numbers_written(tiny_lm: LoadedModel) -> None:
    tok = tiny_lm.tokenizer
    table = NumberTable([tok.decode([i]) for i in range(len(tok))], tiny_lm.vocab_size)
    grounding = Grounding(table, {"23", "48", "19.5"})
    (one,), (two,), (nine,), (five,), (space,) = (tok.encode(t) for t in ("1", "2", "9", "5", " "))
    start = grounding.bias('expr="')
    assert start[two] == 0 and start[one] == 0  # 23 and 19.5 start so
    assert start[five] == -GROUNDING_PENALTY  # no number written starts with 5
    after_one = grounding.bias('expr="1')
    assert after_one[nine] == 0 and after_one[two] == -GROUNDING_PENALTY  # 19.5 goes on with 9; 12 is nobody's
    assert after_one[space] == -GROUNDING_PENALTY  # ending at 1 leaves a number nobody wrote
    assert grounding.bias('expr="23')[space] == 0  # 23 is whole
    (zero,) = tok.encode("0")
    assert start[zero] == 0 and grounding.bias('expr="0')[zero] == -GROUNDING_PENALTY  # 0.5 or 01, not 00
    grounding.add({"12"})  # a tool's result
    assert grounding.bias('expr="1')[two] == 0


def test_the_numbers_a_call_may_write_include_their_other_spellings() -> None:
    # without thousands separators, a percentage as a fraction, a date's 01 as the 1 it is
    assert numbers_in("Drive 12,000 miles at 5% from 2021-01-01") >= {"12000", "0.05", "2021", "1", "5"}


def test_auto_grounds_a_model_not_trained_on_the_protocol_and_off_turns_it_off(tiny_lm: LoadedModel) -> None:
    session = ChatSession(tiny_lm, default_registry(), DecodeConfig(), confirm=lambda call: False)
    grounding = session.number_grounding(QUESTION, session.config)
    assert grounding is not None and grounding.numbers == {"23", "48"}  # not the system prompt's 12 * 7
    assert session.number_grounding(QUESTION, DecodeConfig(ground_numbers="off")) is None
    with pytest.raises(ValueError, match="ground_numbers"):
        DecodeConfig(ground_numbers="sometimes")
    assert torch.all(grounding.bias("no call here") <= 0)
    # a question without numbers leaves calls as the model writes them (every number would cost the same)
    plain = ChatSession(tiny_lm, default_registry(), DecodeConfig(tool_choice="calc", max_new_tokens=16),
                        confirm=lambda call: False)
    unground = ChatSession(tiny_lm, default_registry(), DecodeConfig(tool_choice="calc", max_new_tokens=16,
                                                                     ground_numbers="off"), confirm=lambda call: False)
    assert plain.ask("Say something.").response == unground.ask("Say something.").response
