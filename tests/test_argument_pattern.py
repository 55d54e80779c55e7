"""A str argument's own language (`Annotated[str, Pattern(regex)]`): calls can write nothing else.

calc takes arithmetic only (tools/calc.py EXPRESSION): SmolLM2 once called it with "15% of 840" and
"64 km/h * 7 hours = 42.4 km", which calc could only refuse. Sampled hot from the tiny random model, in
our protocol and in a native format, every calc call matches the expression; a call from elsewhere that
does not is refused with the pattern named; a pattern that cannot be a grammar is refused when the tool
is made.
"""

from __future__ import annotations

import re
from typing import Annotated

import pytest

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.grammar.constraint import make_constraint
from agent.grammar.native.factory import make_native_constraint
from agent.tooling import Pattern, tool
from agent.tooling.json_schema import type_schema
from agent.tooling.registry import default_registry
from agent.tooling.runner import ArgumentError, check_args
from agent.tooling.spec import ToolError, spec_of
from agent.tools.calc import EXPRESSION, calc
from test_native_formats import build_lm


def _sampled_calc_calls(lm, make, prompt: list[int], seeds: int) -> list[str]:
    exprs = []
    for seed in range(seeds):
        constraint = make()
        config = DecodeConfig(strategy="sample", temperature=1.5, seed=seed, max_new_tokens=40)
        result = decode(lm, prompt, config, constraint=constraint)
        exprs += [call.args["expr"] for call in result.tool_calls if call.tool == "calc"]
    return exprs


def test_sampled_protocol_calls_of_calc_are_arithmetic(tiny_lm, agent_home) -> None:
    prompt = tiny_lm.tokenizer.encode("<|user|>\nWhat is 15% of 840?\n<|assistant|>\n")
    exprs = _sampled_calc_calls(tiny_lm, lambda: make_constraint(tiny_lm, default_registry(), tool_choice="calc"),
                                prompt, 30)
    assert len(exprs) >= 25  # calls did get written
    assert all(re.fullmatch(EXPRESSION, e) for e in exprs), exprs
    assert len(set(exprs)) > 5  # and the language is not one fixed string


def test_sampled_native_calls_of_calc_are_arithmetic(agent_home) -> None:
    lm = build_lm("hermes")
    prompt = lm.tokenizer.encode("<|im_start|>user\nWhat is 15% of 840?<|im_end|>\n<|im_start|>assistant\n")
    exprs = _sampled_calc_calls(
        lm, lambda: make_native_constraint(lm, default_registry(), "hermes", tool_choice="calc"), prompt, 20)
    assert len(exprs) >= 15
    assert all(re.fullmatch(EXPRESSION, e) for e in exprs), exprs


def test_a_call_outside_the_pattern_is_refused_with_the_pattern_named() -> None:
    spec = spec_of(calc)
    assert check_args(spec, {"expr": "(125 + 375) * 4"}) == {"expr": "(125 + 375) * 4"}
    with pytest.raises(ArgumentError, match="matching"):
        check_args(spec, {"expr": "15% of 840"})
    assert type_schema(spec.params[0].type, strict=True)["pattern"] == f"^(?:{EXPRESSION})$"


def test_a_pattern_that_cannot_be_a_json_string_grammar_is_refused() -> None:
    with pytest.raises(ToolError, match="quote"):
        @tool
        def quoted(text: Annotated[str, Pattern('"[a-z]+"')]) -> str:
            """Says it."""
            return text
    with pytest.raises(ToolError, match="regular expression"):
        @tool
        def broken(text: Annotated[str, Pattern("[a-z")]) -> str:
            """Says it."""
            return text
    with pytest.raises(ToolError, match="str only"):
        @tool
        def number(n: Annotated[int, Pattern("[0-9]+")]) -> str:
            """Says it."""
            return str(n)
