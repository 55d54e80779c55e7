"""The turn grammar (protocol + registry), island formatting, and parsing responses with lark."""

from __future__ import annotations

from typing import Literal

import pytest
from llguidance import LLMatcher

from agent.grammar.islands import format_island, island_content
from agent.grammar.protocol import (
    ProtocolError,
    TurnGrammar,
    build_turn_grammar,
    format_call,
    parse_response,
)
from agent.grammar.tokenizer import TokenizerInfo, tokenizer_info
from agent.tooling.registry import ToolRegistry, default_registry
from agent.tooling.spec import tool


@tool
def weather(city: str, unit: Literal["C", "F"] = "C", days: list[int] = [], hot: bool = False,  # noqa: B006 - the [] default is what the signature test reads
            scale: float = 1.0) -> str:
    """Weather for a city."""
    return f"{city}: sunny"


@pytest.fixture(scope="module")
def grammar():
    reg = default_registry()
    reg.register(weather)
    return build_turn_grammar(reg)


def test_island_format_follows_the_readme() -> None:
    assert format_island("[3] France: The capital of France is Paris.") == \
        "\n=> [3] France: The capital of France is Paris.\n"
    assert format_island("line one\nline two") == "\n=> line one\\nline two\n"
    assert format_island(None, "division by zero") == "\n=> error: division by zero\n"
    long = island_content("x" * 5000)
    assert long == "x" * 1000 + " ...[truncated]"
    assert island_content("x" * 1000) == "x" * 1000  # at the limit: not cut
    assert island_content("ab" * 20, limit=10) == "ababababab ...[truncated]"


def test_both_renderings_are_valid_for_their_engines(grammar) -> None:
    is_error, messages = LLMatcher.validate_grammar_with_warnings(LLMatcher.grammar_from_lark(grammar.llguidance))
    assert not is_error, messages
    assert grammar.parser is not None  # lark builds its LALR parser without conflicts
    assert grammar.triggers == ["SEARCH(", "LOAD(", "CALL("]
    assert len(grammar.hash) == 16


def test_a_response_splits_into_text_calls_and_islands(grammar) -> None:
    text = ('Let me look. SEARCH("capital of \\"France\\"")\n=> [3] France: Paris SEARCH("x") LOAD(2)\n'
            'Then LOAD(3)\n=> error: no document with id 3\n'
            'CALL(weather, city="Oslo", unit="F", days=[1, 2], scale=2)\n=> Oslo: sunny\nDone.')
    segs = parse_response(text, grammar)
    kinds = [s.kind for s in segs]
    assert kinds == ["text", "call", "island", "text", "call", "island", "call", "island", "text"]
    assert segs[0].text == "Let me look. "
    assert (segs[1].tool, segs[1].args, segs[1].form) == ("search", {"query": 'capital of "France"'}, "SEARCH")
    assert segs[1].text == 'SEARCH("capital of \\"France\\"")'
    # text inside an island is never a call
    assert segs[2].content == '[3] France: Paris SEARCH("x") LOAD(2)'
    assert (segs[4].tool, segs[4].args) == ("load", {"id": 3})
    assert segs[5].is_error
    assert segs[6].tool == "weather"
    assert segs[6].args == {"city": "Oslo", "unit": "F", "days": [1, 2], "scale": 2.0}
    assert isinstance(segs[6].args["scale"], float)
    assert segs[8].text == "Done."
    assert "".join(s.text for s in segs) == text


def test_plain_text_and_near_misses_are_text(grammar) -> None:
    for text in ["Hello!", "SEARCHING for CALL me LOAD", "f(x) = (1 + 2)\n=>not an island", "a => b\n",
                 " => x", "x\n=>\ny", "==> x"]:
        segs = parse_response(text, grammar)
        assert [s.kind for s in segs] == ["text"] and segs[0].text == text
    assert parse_response("", grammar) == []


@pytest.mark.parametrize("bad", [
    'SEARCH(query="x")\n=> r\n',             # shorthand takes the bare value
    'CALL(unknown, x=1)\n=> r\n',            # not a registered tool
    'CALL(calc, expr=12)\n=> r\n',           # wrong type
    'CALL(weather, unit="C")\n=> r\n',       # required argument missing
    'CALL(weather, city="a", unit="K")\n=> r\n',  # not one of the Literal values
    'CALL(weather, unit="C", city="a")\n=> r\n',  # out of signature order
    'LOAD(1)',                               # a call without its island
    'CALL(calc,expr="1")\n=> r\n',           # separator is ", "
])
def test_malformed_calls_do_not_parse_and_say_where(grammar, bad: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_response(bad, grammar)
    assert info.value.line is not None and info.value.column is not None
    assert "line" in str(info.value)


def test_parse_call_and_format_call_round_trip(grammar) -> None:
    reg = grammar.registry
    cases = [
        ("search", {"query": 'a "b" \\ c\nd'}),
        ("load", {"id": -4}),
        ("calc", {"expr": "2 ** 10"}),
        ("weather", {"city": "Zürich", "days": [3], "hot": True}),
        ("weather", {"city": "x", "unit": "C", "days": [], "hot": False, "scale": 0.25}),
    ]
    for name, args in cases:
        text = format_call(reg.get(name), args)
        call = grammar.parse_call(text)
        assert (call.tool, call.args, call.text) == (name, args, text)
    assert format_call(reg.get("search"), {"query": "x"}) == 'SEARCH("x")'
    assert format_call(reg.get("search"), {"query": "x"}, form="CALL") == 'CALL(search, query="x")'
    assert grammar.parse_call('CALL(search, query="x")').args == {"query": "x"}
    with pytest.raises(ProtocolError):
        grammar.parse_call('hello SEARCH("x")')


def test_only_registered_tools_are_in_the_grammar() -> None:
    reg = ToolRegistry()
    reg.register(weather)
    g = build_turn_grammar(reg)
    assert g.triggers == ["CALL("]  # no search/load: no shorthands
    assert [s.kind for s in parse_response('SEARCH("x") is text here', g)] == ["text"]
    with pytest.raises(ProtocolError):
        parse_response('CALL(calc, expr="1")\n=> 1\n', g)
    free = build_turn_grammar(None)
    assert free.triggers == []
    assert [s.kind for s in parse_response('CALL(calc, expr="1")', free)] == ["text"]
    is_error, messages = LLMatcher.validate_grammar_with_warnings(LLMatcher.grammar_from_lark(free.llguidance))
    assert not is_error, messages


# Complete responses and whether the protocol accepts them. A line of free text that starts with
# the island arrow `=> ` would look exactly like a tool's result, so no free text may write one:
# not at the start, not after a newline, not right after an island, not before a call.
LINE_START_CASES = [
    ("=> 42", False),
    ("The answer:\n=> 42", False),
    ('SEARCH("q")\n=> no results\n=> [3] France: Paris', False),
    ('Look:\n=> SEARCH("q")\n=> r\n', False),
    ('=> CALL(calc, expr="1")\n=> 1\n', False),
    ("=>42", True),
    ("a => b", True),
    ("ends with\n=>", True),
    ("x\n=>\ny", True),
    (" => indented", True),
    ('SEARCH("q")\n=> r\n=>x', True),
]
# JSON string escapes in call arguments: a surrogate only as a high + low pair, never alone.
SURROGATE_CASES = [
    ('SEARCH("\\ud800x")\n=> r\n', False),
    ('SEARCH("\\udc00")\n=> r\n', False),
    ('SEARCH("\\ud83d")\n=> r\n', False),
    ('SEARCH("\\ud83d\\u0041")\n=> r\n', False),
    ('CALL(calc, expr="\\uDBFF")\n=> r\n', False),
    ('SEARCH("\\ud83d\\ude00")\n=> r\n', True),
    ('SEARCH("\\uD7FF\\uE000\\u00e9")\n=> r\n', True),
]


def engine_accepts(info: TokenizerInfo, grammar: TurnGrammar, text: str) -> bool:
    """Whether llguidance (the token masks) takes `text`, fed one byte-token at a time, as a whole response."""
    matcher = info.matcher(grammar.llguidance)
    ids = [info.by_bytes[bytes([b])] for b in text.encode()]
    return matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()


def lark_accepts(grammar: TurnGrammar, text: str) -> bool:
    try:
        parse_response(text, grammar)
    except ProtocolError:
        return False
    return True


@pytest.mark.parametrize(("text", "accepted"), LINE_START_CASES + SURROGATE_CASES)
def test_both_renderings_agree_on_island_arrows_and_surrogates(grammar, tiny_lm, text: str, accepted: bool) -> None:
    info = tokenizer_info(tiny_lm.tokenizer, tiny_lm.vocab_size, tiny_lm.eos_token_ids)
    assert lark_accepts(grammar, text) is accepted
    assert engine_accepts(info, grammar, text) is accepted
    if not text.startswith(("SEARCH", "CALL")):  # without tools: the same rule for free text
        free = build_turn_grammar(None)
        assert lark_accepts(free, text) is accepted
        assert engine_accepts(info, free, text) is accepted


def test_a_surrogate_pair_escape_is_one_character(grammar) -> None:
    (call, _island) = parse_response('SEARCH("\\ud83d\\ude00!")\n=> r\n', grammar)
    assert call.args == {"query": "\U0001F600!"}
    assert call.args["query"].encode("utf-8")  # valid text: storable, printable


def test_both_renderings_agree_on_random_responses(grammar, tiny_lm) -> None:
    """3,000 seeded random responses built from the pieces that matter here (arrows, newlines,
    spaces, call openings, whole calls with their islands, escapes): lark and llguidance accept
    exactly the same ones."""
    import random

    info = tokenizer_info(tiny_lm.tokenizer, tiny_lm.vocab_size, tiny_lm.eos_token_ids)
    pieces = ["=", ">", "=>", "=> ", " ", "\n", "\n=> ", "a", "x y", "SEARCH(", ")", '"', "\\", "é",
              'SEARCH("q")\n=> r\n', 'CALL(calc, expr="1")\n=> 1\n', 'SEARCH("\\ud83d\\ude00")\n=> r\n',
              'SEARCH("\\ud800")\n=> r\n', "LOAD(2)\n=> d\n", "\n=> fake\n"]
    rng = random.Random(18)
    accepted = 0
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        by_lark = lark_accepts(grammar, text)
        assert by_lark is engine_accepts(info, grammar, text), text
        accepted += by_lark
    assert 300 < accepted < 2700  # both kinds were exercised
