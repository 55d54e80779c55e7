"""A call's numbers lean to the numbers the conversation wrote (agent.decoding.grounding, --ground-numbers).

SmolLM2 copied the worked example's 12 into `calc(expr="12 * 48")` for "23 boxes with 48 apples each". The
model here is the tiny random Llama with a liking for the digit "1" added to its logits (smaller than the
penalty): without grounding its calls are full of 1s; grounded, a question without a 1 gets calls without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import pytest
import torch

from agent.config import DecodeConfig
from agent.decoding.grounding import (
    GROUNDING_PENALTY,
    Grounding,
    NumberTable,
    number_slots,
    numbers_in,
    open_value_string,
    unused_slots,
)
from agent.model.runtime import LoadedModel
from agent.tooling import tool
from agent.tooling.records import ToolCallRecord
from agent.tooling.registry import ToolRegistry, default_registry
from agent.tooling.spec import Pattern
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


def _first_call(lm: LoadedModel, tool_fn: Callable[..., str], question: str, strategy: str, ground: str,
                tokens: int = 24) -> ToolCallRecord:
    """The first call of the answer to `question`, which must call `tool_fn` (registered alone: the tiny
    model's context holds no more tools and their examples)."""
    config = DecodeConfig(strategy=strategy, tool_choice=tool_fn.__name__, max_new_tokens=tokens, budget=tokens,
                          ground_numbers=ground)
    registry = ToolRegistry()
    registry.register(tool_fn)
    result = ChatSession(lm, registry, config, confirm=lambda call: False).ask(question)
    assert result.tool_calls, result.response
    return result.tool_calls[0]


def _call_text(lm: LoadedModel, strategy: str, ground: str) -> str:
    return _first_call(lm, note_down, QUESTION, strategy, ground).call_text


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
    assert numbers_in("Drive 12,000 miles at 5% from 2021-01-01") >= {"12000", "0.05", "100", "2021", "1", "5"}
    assert "100" not in numbers_in("Drive 12,000 miles from 2021-01-01")  # 100 only as a percentage's divisor


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


@tool
def add_up(expr: Annotated[str, Pattern(r"[1-9][0-9]?( \+ [1-9][0-9]?)+")]) -> str:
    """Add the numbers up."""
    return "added"


@pytest.mark.parametrize("strategy", ["greedy", "tree"])
def test_a_sum_is_held_open_while_a_number_the_user_asked_about_is_missing(tiny_model_dir, strategy: str) -> None:
    # SmolLM2 wrote `36 * 36` for "36 times 36 times 36"; this model likes closing the string even more
    quick = favouring_lm(tiny_model_dir, '"', 3.0, "likes-quote")
    question = "Add up 23 and 48 and 17."
    unused, written = {}, {}
    for ground in ("off", "on"):
        expr = _first_call(quick, add_up, question, strategy, ground, tokens=32).args["expr"]
        unused[ground], written[ground] = unused_slots(number_slots(question), expr), len(number_slots(expr))
    assert unused["off"] >= 2 and written["off"] == 2, (unused, written)  # it closes as soon as it may
    assert written["on"] >= 3, written  # held open for as many numbers as were asked about
    if strategy == "tree":  # greedy, held open, writes 48 again where 17 was missing, until the tokens run out
        assert unused["on"] == 0, unused


def test_the_numbers_asked_about_count_each_time_and_in_each_form() -> None:
    thrice = number_slots("What is 36 times 36 times 36?")
    assert unused_slots(thrice, "36 * 36") == 1 and unused_slots(thrice, "36 * 36 * 36") == 0
    percent = number_slots("What's 15% of 12,000?")
    assert unused_slots(percent, "0.15 * 12000") == 0 and unused_slots(percent, "15 / 100 * 12,000") == 0
    assert number_slots("Is SmolLM2 small?") == []  # a name's digit is no number asked about
    # only an expression is held open, and only a value's string: not a key, not a string already closed
    table = NumberTable(['"', '")', "4", " *"], 4)
    held = Grounding(table, {"36", "4.5", "10"}, asked=thrice + number_slots("rated 4.5"))
    assert held.closing_bias('CALL(calc, expr="36 * 36', "") == {0: -GROUNDING_PENALTY, 1: -GROUNDING_PENALTY}
    assert held.closing_bias('CALL(calc, expr="36', "") == {0: -GROUNDING_PENALTY, 1: -GROUNDING_PENALTY}
    assert held.closing_bias('CALL(find, platform="Windows 10', "") == {}  # 4.5 is the next argument's
    assert held.closing_bias('CALL(calc, expr="36 * 36 * 36', "rated 4.5") == {}  # an earlier call wrote it
    assert open_value_string('{"name": "calc", "arguments": {"expr": "36 * 3') == "36 * 3"
    assert open_value_string('CALL(calc, expr="36 * 3') == "36 * 3"
    assert open_value_string('{"arguments": {"ex') is None and open_value_string('expr="36"') is None
