"""Tools described in JSON Schema (`--tools x.json`): the mapping, its errors, pairing with a Python
function, and both grammars (protocol and a native format) producing only schema-valid calls."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from transformers import DynamicCache

from agent.grammar.constraint import make_constraint
from agent.grammar.native.factory import make_native_constraint
from agent.grammar.protocol import ProtocolError, build_turn_grammar, parse_response
from agent.grammar.system_prompt import worked_examples
from agent.grammar.tokenizer import tokenizer_info
from agent.model.runtime import LoadedModel
from agent.tooling.json_schema import parameters_schema
from agent.tooling.registry import ToolRegistry, build_registry
from agent.tooling.runner import ToolRunner
from agent.tooling.spec import ToolError, ToolSpec, make_spec
from test_native_formats import build_lm

BOOK_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "when": {"type": "object", "description": "When to come.",
                 "properties": {"day": {"type": "string", "enum": ["mon", "tue", "wed"]},
                                "seats": {"type": "integer"},
                                "late": {"type": "boolean", "default": False}},
                 "required": ["day", "seats"]},
        "size": {"enum": ["small", "large", 3, 2.5]},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["window", "quiet"]}},
        "guests": {"type": "array", "items": {"type": "object",
                                              "properties": {"name": {"type": "string"},
                                                             "age": {"type": "number"}},
                                              "required": ["name"]}},
        "note": {"type": "string", "default": "none"},
    },
    "required": ["when", "size"],
}
BOOK = [{"type": "function", "function": {"name": "book", "description": "Book a table.",
                                          "parameters": BOOK_PARAMETERS}}]
IMPL = '''
def book(when, size, tags=(), guests=(), note="none"):
    return f"booked {when['day']} for {when['seats']} ({size}, {list(tags)}, {len(guests)} guests, {note})"
'''


def write_tools(tmp_path: Path, tools: Any = None, impl: str = IMPL) -> tuple[str, str]:
    described = tmp_path / "tools.json"
    described.write_text(json.dumps(BOOK if tools is None else tools), encoding="utf-8")
    runs = tmp_path / "book_impl.py"
    runs.write_text(impl, encoding="utf-8")
    return str(described), str(runs)


def test_a_json_tool_is_described_by_its_schema_and_run_by_its_function(tmp_path: Path) -> None:
    described, runs = write_tools(tmp_path)
    registry = build_registry([described, runs])
    spec = registry.get("book")
    assert spec.description == "Book a table." and not spec.pure  # no readOnlyHint: a side effect
    assert described in spec.source and runs in spec.source
    assert parameters_schema(spec) == BOOK_PARAMETERS  # a template shows the tool's own schema
    record = ToolRunner(registry, confirm=lambda r: True).run(
        "book", {"when": {"day": "mon", "seats": 2}, "size": 3})
    assert record.result == "booked mon for 2 (3, [], 0 guests, none)", record.error
    bad = ToolRunner(registry, confirm=lambda r: True).run("book", {"when": {"day": "fri", "seats": 2}, "size": 3})
    assert bad.error is not None and "'when'" in bad.error and '"day"' in bad.error and '"fri"' in bad.error


def test_the_protocol_writes_objects_with_keys_in_schema_order(tmp_path: Path) -> None:
    registry = build_registry(list(write_tools(tmp_path)))
    grammar = build_turn_grammar(registry)
    call = grammar.parse_call('CALL(book, when={"day": "tue", "seats": 2, "late": true}, size=2.5, '
                              'guests=[{"name": "Ann"}, {"name": "Bo", "age": 7}])')
    assert call.args == {"when": {"day": "tue", "seats": 2, "late": True}, "size": 2.5,
                         "guests": [{"name": "Ann"}, {"name": "Bo", "age": 7.0}]}
    # the worked example a protocol system prompt shows is a call the grammar takes
    (example,) = [e for e in worked_examples([registry.get("book")]) if "CALL(book" in e]
    shown = example.split("Answer: ", 1)[1].split("\n", 1)[0]
    assert grammar.parse_call(shown).args == {"when": {"day": "mon", "seats": 1}, "size": "small"}
    for wrong in ('CALL(book, when={"seats": 2, "day": "tue"}, size=3)',  # keys out of order
                  'CALL(book, when={"day": "tue"}, size=3)',  # a required key missing
                  'CALL(book, when={"day": "tue", "seats": 2, "x": 1}, size=3)',  # an unknown key
                  'CALL(book, when={"day": "fri", "seats": 2}, size=3)'):  # not in the enum
        with pytest.raises(ValueError):
            grammar.parse_call(wrong)


@pytest.mark.parametrize(("schema", "message"), [
    ({"type": "object", "properties": {"when": {"oneOf": [{"type": "string"}]}}},
     'tool "book": parameters.properties.when: "oneOf" is not supported'),
    ({"type": "object", "properties": {"when": {"type": "string", "format": "date"}}},
     'tool "book": parameters.properties.when: "format" is not supported'),
    ({"type": "object", "properties": {"when": {"type": ["string", "integer"]}}},
     'parameters.properties.when: "type": ["string", "integer"] is not supported'),
    ({"type": "object", "properties": {"when": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}},
     'parameters.properties.when: "anyOf" is not supported'),
    ({"type": "object",
      "properties": {"a": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}}},
     "parameters.properties.a.items: arrays of arrays are not supported"),
    ({"type": "object", "properties": {"a": {"type": "object"}}},
     "parameters.properties.a: an object needs its \"properties\""),
    ({"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}},
     "parameters.properties.a.default: does not match the type"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
     'parameters.required: "b" is not one of the properties'),
])
def test_what_cannot_be_mapped_names_the_tool_and_the_path(tmp_path: Path, schema: dict, message: str) -> None:
    tools = [{"type": "function", "function": {"name": "book", "description": "Book.", "parameters": schema}}]
    described, runs = write_tools(tmp_path, tools, impl="def book(**kwargs):\n    return 'ok'\n")
    with pytest.raises(ToolError) as error:
        build_registry([described, runs])
    assert f"{described}: " in str(error.value) and message in str(error.value)


def test_an_optional_written_as_x_or_null_is_an_optional_x(tmp_path: Path) -> None:
    """pydantic (and so most Python MCP servers) writes `Optional[int] = None` as anyOf [int, null]."""
    parameters = {"type": "object", "properties": {
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "Limit"},
        "mode": {"type": ["string", "null"], "enum": ["a", "b"], "default": "a"}}}
    tools = [{"name": "pick", "description": "Pick.", "parameters": parameters}]
    described, runs = write_tools(tmp_path, tools, impl="def pick(limit=None, mode='a'):\n    return 'ok'\n")
    limit, mode = build_registry([described, runs]).get("pick").params
    assert (limit.type.kind, limit.required, limit.default) == ("int", False, None)
    assert (mode.type.kind, mode.type.choices, mode.default) == ("literal", ("a", "b"), "a")


def test_a_bare_function_object_and_a_plain_function_work_too(tmp_path: Path) -> None:
    tools = [{"name": "shout", "description": "Shout a word.", "annotations": {"readOnlyHint": True},
              "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}]
    described, runs = write_tools(tmp_path, tools, impl="def shout(word):\n    return word.upper()\n")
    registry = build_registry([described, runs])
    assert registry.get("shout").pure  # readOnlyHint: runs without asking
    assert ToolRunner(registry).run("shout", {"word": "hi"}).result == "HI"


def test_a_described_tool_without_an_implementation_is_an_error(tmp_path: Path) -> None:
    described, _ = write_tools(tmp_path)
    with pytest.raises(ToolError, match="tool 'book' has no implementation"):
        build_registry([described])
    impl = "def book(when, size, colour, tags=(), guests=(), note=''):\n    return 'x'\n"
    described, runs = write_tools(tmp_path, impl=impl)
    with pytest.raises(ToolError, match="needs argument 'colour'"):
        build_registry([described, runs])


def test_the_cli_reports_a_bad_tools_file_before_any_model_loads(tmp_path: Path) -> None:
    described, _ = write_tools(tmp_path)
    done = subprocess.run([sys.executable, "-m", "agent.cli", "run", "hi", "--tools", described, "--no-save",
                           "--model", str(tmp_path / "no-such-model")],
                          capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert done.returncode != 0 and "has no implementation" in done.stderr and "Traceback" not in done.stderr


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AGENT_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------------------------
# 1,000 sampled calls per grammar, all schema-valid


def sample_calls(lm: LoadedModel, first: Any, prompt: str, count: int, max_tokens: int = 160,
                 seed: int = 0) -> list[dict[str, Any]]:
    """`count` forks of the constraint `first`, decoded together (one batched forward pass per step, KV
    cache shared by position), each sampled from the model's masked distribution until its call closes
    (the side-effect tool is deferred, so the call's arguments are read from the pending call)."""
    generator = torch.Generator().manual_seed(seed)
    forks = [first.fork() for _ in range(count)]
    forced: list[list[int]] = [[] for _ in range(count)]
    ids = torch.tensor([lm.tokenizer.encode(prompt)] * count)
    calls: list[dict[str, Any] | None] = [None] * count
    cache = DynamicCache()
    with torch.no_grad():
        logits = lm.run(cache, input_ids=ids).logits[:, -1, :]
        for step in range(max_tokens):
            chosen = []
            for i, con in enumerate(forks):
                if calls[i] is not None or con.is_finished():
                    chosen.append(lm.tokenizer.pad_token_id or 0)
                    continue
                if forced[i]:
                    token = forced[i].pop(0)
                else:
                    con.set_tokens_left(max_tokens - step)
                    mask = con.allowed_tokens()[: logits.shape[1]]
                    probs = torch.softmax(logits[i].masked_fill(~mask, float("-inf")), dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                forced[i] += con.accept(token).forced_token_ids
                if con.pending_call is not None:
                    calls[i] = con.pending_call.args
                chosen.append(token)
            if all(c is not None for c in calls):
                break
            logits = lm.run(cache, input_ids=torch.tensor(chosen)[:, None]).logits[:, -1, :]
    print(*calls[:5], sep="\n")  # what the model wrote, for a failing run's log
    missing = sum(c is None for c in calls)
    assert not missing, f"{missing} of {count} sampled responses did not finish their call"
    return [c for c in calls if c is not None]


def check_all_valid(calls: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator({**BOOK_PARAMETERS, "additionalProperties": False})
    for args in calls:
        errors = list(validator.iter_errors(args))
        assert not errors, f"{args}: {errors[0].message}"
    # the model explored the schema, not one corner of it
    assert len({json.dumps(c, sort_keys=True) for c in calls}) > len(calls) // 2
    assert any("guests" in c for c in calls) and any("tags" in c for c in calls)


def test_1000_sampled_protocol_calls_are_all_schema_valid(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    registry = build_registry(list(write_tools(tmp_path)), builtins=False, entry_points=False)
    constraint = make_constraint(tiny_lm, registry, tool_choice="required", defer_side_effects=True)
    calls = sample_calls(tiny_lm, constraint, "<|user|>\nBook a table.\n<|assistant|>\n", 1000)
    check_all_valid(calls)


def test_1000_sampled_hermes_calls_are_all_schema_valid(tmp_path: Path) -> None:
    registry = build_registry(list(write_tools(tmp_path)), builtins=False, entry_points=False)
    lm = build_lm("hermes")
    constraint = make_native_constraint(lm, registry, "hermes", tool_choice="required", defer_side_effects=True)
    prompt = lm.tokenizer.apply_chat_template([{"role": "user", "content": "Book a table."}], tokenize=False,
                                              add_generation_prompt=True)
    calls = sample_calls(lm, constraint, prompt, 1000)
    check_all_valid(calls)


def test_a_provided_tool_is_described_by_the_json_or_clashes_clearly(tmp_path: Path) -> None:
    """Tools provided from elsewhere (an MCP server's): a .json description of the same name narrows
    one; one named like a built-in is an error, not silently dropped."""
    def calc(expr: str) -> str:
        """A second calc."""
        return expr

    with pytest.raises(ToolError, match="'calc' is already registered"):
        build_registry([], provided=ToolRegistry([make_spec(calc)]))

    def book(**kwargs: Any) -> str:
        """Books, described below."""
        return json.dumps(kwargs)

    described, _ = write_tools(tmp_path)
    provided = ToolSpec(name="book", description="Books.", params=(), func=book, pure=False, source="elsewhere")
    registry = build_registry([described], provided=ToolRegistry([provided]))
    spec = registry.get("book")
    assert spec.params[0].name == "when" and spec.source.endswith("(run by elsewhere)") and not spec.pure


# ---------------------------------------------------------------------------------------------
# numbers are finite: JSON reads 1e999 as inf, which no tool means and no JSON can pass on


SCALE = [{"name": "scale", "description": "Scale a list of numbers.", "annotations": {"readOnlyHint": True},
          "parameters": {"type": "object", "required": ["factor"],
                         "properties": {"factor": {"type": "number"},
                                        "values": {"type": "array", "items": {"type": "number"}}}}}]


@pytest.mark.parametrize(("written", "accepted"), [
    ("1e999", False), ("-1E999", False), ("1e+999", False), ("1e308", False), ("1.5", True),
    ("999999999999999999.99999999999999999e99", True), ("1e-999", True), ("-2.5E+12", True),
])
def test_the_protocol_writes_only_finite_numbers(tmp_path: Path, tiny_lm: LoadedModel, written: str,
                                                 accepted: bool) -> None:
    impl = "def scale(factor, values=()):\n    return str([factor * v for v in values])\n"
    registry = build_registry(list(write_tools(tmp_path, SCALE, impl=impl)), builtins=False, entry_points=False)
    grammar = build_turn_grammar(registry)
    info = tokenizer_info(tiny_lm.tokenizer, tiny_lm.vocab_size, tiny_lm.eos_token_ids)
    for text in (f"CALL(scale, factor={written})\n=> r\n", f"CALL(scale, factor=1, values=[2, {written}])\n=> r\n"):
        matcher = info.matcher(grammar.llguidance)  # the token masks, fed one byte-token at a time
        ids = [info.by_bytes[bytes([b])] for b in text.encode()]
        assert (matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()) is accepted, text
        try:
            (call, _island) = parse_response(text, grammar)
        except ProtocolError:
            assert not accepted, text
        else:
            assert accepted and all(math.isfinite(v) for v in [call.args["factor"], *call.args.get("values", [])])


def test_an_infinite_number_is_an_error_island_not_a_call(tmp_path: Path) -> None:
    """A native format's JSON (or a caller of the runner) can still hand over inf or nan: the island says so."""
    registry = build_registry(list(write_tools(tmp_path, SCALE, impl="def scale(factor, values=()):\n"
                                                                       "    return 'ran'\n")),
                              builtins=False, entry_points=False)
    runner = ToolRunner(registry)
    for args in ({"factor": json.loads("1e999")}, {"factor": 2, "values": [1, float("nan")]}):
        record = runner.run("scale", args)
        assert record.result is None and "expected a finite number" in record.error, record
        assert record.island_text.startswith("\n=> error: scale: argument ")
    assert runner.run("scale", {"factor": 2, "values": [1e300]}).result == "ran"
