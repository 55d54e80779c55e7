"""The tool-call protocol: the turn grammar, island formatting, and parsing a response into segments.

One grammar text is assembled from `grammars/protocol.lark` plus rules generated from the tool
registry. Two renderings exist because the two engines differ in one place, the free text:
llguidance (token masks) gets lazy lexemes and a negated regex, Python's `lark` (parsing the
finished response) gets equivalent regexes with a lookahead. Everything else is the same text.
Calls are found only by the lark parse; nothing here runs a regex over model output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from agent.grammar.islands import ISLAND_PREFIX, ISLAND_SUFFIX
from agent.grammar.text_rules import (
    CALL_TRIGGER,
    LOAD_TRIGGER,
    SEARCH_TRIGGER,
    text_rules_lark,
    text_rules_llguidance,
)
from agent.grammar.values import ValueRules, example_value, lark_literal, value_json
from agent.tooling.registry import ToolRegistry
from agent.tooling.spec import Param, ToolSpec


class ProtocolError(ValueError):
    """A response (or call) does not follow the protocol; says where (line, column)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.line = line
        self.column = column


# ---------------------------------------------------------------------------------------------
# Grammar assembly


def protocol_template() -> str:
    """The fixed part of the protocol grammar (grammars/protocol.lark)."""
    return resources.files("agent.grammars").joinpath("protocol.lark").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ArgRule:
    tool: str
    param: Param


@dataclass
class TurnGrammar:
    """The turn's grammar in both renderings, and what is needed to read its parse trees."""

    llguidance: str  # Lark text for llguidance (token masks)
    lark: str  # Lark text for Python's lark (parsing the finished response)
    registry: ToolRegistry
    triggers: list[str]  # call openings present: SEARCH( / LOAD( / CALL(
    tool_rules: dict[str, str] = field(default_factory=dict)  # rule name -> tool name
    arg_rules: dict[str, ArgRule] = field(default_factory=dict)  # rule name -> (tool, param)
    first_call_forced: bool = False  # tool_choice required / a name: the response opens with a call
    values: ValueRules = field(default_factory=ValueRules)  # object values' rules, to read them back

    @property
    def hash(self) -> str:
        """Identifies the grammar (stored with each turn as DecodeConfig.grammar_hash)."""
        return hashlib.sha256(self.llguidance.encode()).hexdigest()[:16]

    @cached_property
    def parser(self) -> Lark:
        return Lark(self.lark, parser="lalr", lexer="contextual", start=["start", "call"],
                    maybe_placeholders=False, cache=False)

    def parse(self, text: str) -> list[Segment]:
        """Split a finished response into text, call and island segments (ProtocolError if it does not parse)."""
        return parse_response(text, self)

    def parse_call(self, call_text: str) -> CallSegment:
        """Parse one call, e.g. `SEARCH("x")`, into its tool and typed arguments."""
        tree = _parse(self.parser, call_text, "call", f"not a valid call {call_text!r}")
        reader = _Reader(self)
        if reader.head_text(tree.children[0]):
            raise ProtocolError(f"not a single call: {call_text!r} has text before the call")
        return reader.call(tree, call_text)


def build_turn_grammar(registry: ToolRegistry | None, tool_choice: str = "auto") -> TurnGrammar:
    """Protocol + registry: only registered names are legal, each argument constrained by its type.

    tool_choice: "auto" (text and calls as the model likes), "required" (the response opens with a
    call), a tool's name (it opens with a call of that tool), "none" (no call can be written).
    """
    registry = registry if registry is not None else ToolRegistry()
    if tool_choice not in ("auto", "required", "none") and tool_choice not in registry:
        raise ValueError(f"tool_choice names {tool_choice!r}, which is not a registered tool "
                         f"(registered: {', '.join(registry.names()) or 'none'})")
    specs = list(registry)
    rules: list[str] = []
    terms: list[str] = []
    tool_rules: dict[str, str] = {}
    arg_rules: dict[str, ArgRule] = {}
    call_alts: list[str] = []
    triggers: list[str] = []
    values = ValueRules()

    search = next((s for s in specs if s.shorthand == "SEARCH"), None)
    load = next((s for s in specs if s.shorthand == "LOAD"), None)
    if search is not None:
        triggers.append(SEARCH_TRIGGER)
        call_alts.append("search_call")
        rules.append('search_call: search_head STRING ")"')
    if load is not None:
        triggers.append(LOAD_TRIGGER)
        call_alts.append("load_call")
        rules.append('load_call: load_head INT ")"')
    if specs:
        triggers.append(CALL_TRIGGER)
        call_alts.append("generic_call")
        rules.append('generic_call: call_head tool_args ")"')
        tool_alts = []
        for i, spec in enumerate(specs):
            tool_rule = f"tool_{i}"
            tool_rules[tool_rule] = spec.name
            tool_alts.append(tool_rule)
            parts = [lark_literal(spec.name)]
            for j, param in enumerate(spec.params):
                arg_rule = f"arg_{i}_{j}"
                arg_rules[arg_rule] = ArgRule(spec.name, param)
                value = values.expr(param.type, terms, f"LIT_{i}_{j}")
                rules.append(f"{arg_rule}: {lark_literal(', ' + param.name + '=')} {value}")
                parts.append(arg_rule if param.required else f"{arg_rule}?")
            rules.append(f"{tool_rule}: " + " ".join(parts))
        rules.append("tool_args: " + " | ".join(tool_alts))
    first = _first_call_rules(specs, tool_choice, tool_rules)
    if call_alts:
        rules.insert(0, "call: " + " | ".join(call_alts))
    else:
        rules.insert(0, "call: NO_CALL")  # no tools: a rule that can never match
        terms.append('NO_CALL: "\\x00NO TOOLS\\x00"')

    generated = "\n// --- generated from the tool registry ---\n" + "\n".join(rules + terms + values.lines) + "\n"
    base = protocol_template() + generated
    if not call_alts:
        # Without tools the response is free text only.
        base = base.replace("start: chunk* tail?", "start: tail?")
    elif tool_choice == "none":
        # Free text only, and it may not write a call opening either (no text that looks like a call).
        base = base.replace("start: chunk* tail?", "start: tail?")
    elif first:
        base = base.replace("start: chunk* tail?", "start: first_chunk chunk* tail?") + "\n".join(first) + "\n"
    return TurnGrammar(
        llguidance=base + text_rules_llguidance(triggers),
        lark=base + text_rules_lark(triggers),
        registry=registry,
        triggers=triggers,
        tool_rules=tool_rules,
        arg_rules=arg_rules,
        first_call_forced=bool(first),
        values=values,
    )


def _first_call_rules(specs: list[ToolSpec], tool_choice: str, tool_rules: dict[str, str]) -> list[str]:
    """For `required` or a tool's name: the response's first chunk, a call with no text before it
    (its opening is an exact literal, not a lazy head). Empty for `auto` / `none`."""
    if tool_choice in ("auto", "none") or not specs:
        return []
    wanted = [s for s in specs if tool_choice in ("required", s.name)]
    rule_of = {name: rule for rule, name in tool_rules.items()}
    alts, rules = [], []
    for form, open_rule, value, trig in (("SEARCH", "search_open", "STRING", SEARCH_TRIGGER),
                                          ("LOAD", "load_open", "INT", LOAD_TRIGGER)):
        if any(s.shorthand == form for s in wanted):
            alts.append(f"{form.lower()}_call_first")
            rules += [f'{form.lower()}_call_first: {open_rule} {value} ")"',
                      f"{open_rule}: {form}_OPEN", f"{form}_OPEN: {lark_literal(trig)}"]
    alts.append("generic_call_first")
    rules += ['generic_call_first: call_open first_tool_args ")"', "call_open: CALL_OPEN",
              f"CALL_OPEN: {lark_literal(CALL_TRIGGER)}",
              "first_tool_args: " + " | ".join(rule_of[s.name] for s in wanted)]
    return ["first_chunk: first_call ISLAND", "first_call: " + " | ".join(alts)] + rules


# ---------------------------------------------------------------------------------------------
# Segments


@dataclass
class TextSegment:
    text: str
    kind: str = "text"


@dataclass
class CallSegment:
    tool: str
    args: dict[str, Any]  # typed values, in the order written
    text: str  # the call as written, e.g. 'SEARCH("x")'
    form: str  # "SEARCH" | "LOAD" | "CALL"
    kind: str = "call"


@dataclass
class IslandSegment:
    text: str  # the whole island, `\n=> ...\n`
    content: str  # what follows `=> ` (one line)
    kind: str = "island"

    @property
    def is_error(self) -> bool:
        return self.content.startswith("error: ")


Segment = TextSegment | CallSegment | IslandSegment


def _parse(parser: Lark, text: str, start: str, what: str) -> Tree:
    """The lark parse of `text` from rule `start`; ProtocolError saying `what` went wrong, and where."""
    try:
        return parser.parse(text, start=start)
    except UnexpectedInput as exc:  # lark's exception kinds carry line/column only sometimes
        raise ProtocolError(f"{what}: {_describe(exc)}", getattr(exc, "line", None),
                            getattr(exc, "column", None)) from None


def _describe(exc: UnexpectedInput) -> str:
    expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None)
    if expected:
        names = sorted(str(e) for e in expected)[:8]
        return "unexpected input; expected one of " + ", ".join(names)
    return "unexpected input"


def _plain(rule: str) -> str:
    """A call rule's name without the `_first` of the forced first call's copy."""
    return rule.removesuffix("_first")


class _Reader:
    """Reads lark parse trees of the turn grammar into segments with typed arguments."""

    def __init__(self, grammar: TurnGrammar) -> None:
        self.g = grammar

    def call(self, tree: Tree, call_text: str) -> CallSegment:
        """tree: a `call` node; call_text: the call as written (from the token positions)."""
        node = tree.children[0]
        form = {"search_call": "SEARCH", "load_call": "LOAD"}.get(_plain(node.data), "CALL")
        if form in ("SEARCH", "LOAD"):
            spec = next(s for s in self.g.registry if s.shorthand == form)
            tok = node.children[1]
            value = json.loads(str(tok)) if form == "SEARCH" else int(str(tok))
            return CallSegment(spec.name, {spec.params[0].name: value}, call_text, form)
        tool_tree = node.children[1].children[0]
        tool = self.g.tool_rules[tool_tree.data]
        args: dict[str, Any] = {}
        for child in tool_tree.children:
            if isinstance(child, Tree) and child.data in self.g.arg_rules:
                rule = self.g.arg_rules[child.data]
                args[rule.param.name] = self.g.values.read(child.children, rule.param.type)
        return CallSegment(tool, args, call_text, form)

    @staticmethod
    def head(node: Tree) -> Token:
        head = node.children[0]
        return head.children[0] if isinstance(head, Tree) else head

    def head_text(self, node: Tree) -> str:
        """The free text before the call opening, taken from the head token."""
        tok = self.head(node)
        trig = {"search_call": SEARCH_TRIGGER, "load_call": LOAD_TRIGGER}.get(_plain(node.data), CALL_TRIGGER)
        return str(tok)[: len(str(tok)) - len(trig)]


def parse_response(text: str, grammar: TurnGrammar) -> list[Segment]:
    """Text / call (with typed args) / island segments of a finished response, via the lark parse."""
    if text == "":
        return []
    tree = _parse(grammar.parser, text, "start", "the response does not follow the tool-call protocol")
    reader = _Reader(grammar)
    segments: list[Segment] = []
    for child in tree.children:
        if child.data in ("chunk", "first_chunk"):
            call_tree, island = child.children
            node = call_tree.children[0]
            lead = reader.head_text(node)
            if lead:
                segments.append(TextSegment(lead))
            call_start = reader.head(node).start_pos + len(lead)
            segments.append(reader.call(call_tree, text[call_start:island.start_pos]))
            island_text = str(island)
            segments.append(IslandSegment(island_text, island_text[len(ISLAND_PREFIX):-len(ISLAND_SUFFIX)]))
        elif child.data == "tail":
            segments.append(TextSegment(str(child.children[0])))
    return segments


def format_call(spec: ToolSpec, args: dict[str, Any], form: str | None = None) -> str:
    """The canonical text of a call (what a model should write), e.g. `CALL(calc, expr="1+2")`.

    `form` "CALL" forces the long form even for search/load.
    """
    short = spec.shorthand if form != "CALL" else None
    if short is not None:
        (param,) = spec.params
        return f"{short}({value_json(args[param.name])})"
    parts = [spec.name]
    for p in spec.params:
        if p.name in args:
            parts.append(f"{p.name}={value_json(args[p.name])}")
        elif p.required:
            raise ValueError(f"format_call: {spec.name} needs argument {p.name!r}")
    return "CALL(" + ", ".join(parts) + ")"


def call_opening(spec: ToolSpec) -> tuple[str, int]:
    """A call of this tool as a response starts it, and where its first required argument's content starts
    in that text: (`CALL(calc, expr="text")`, 17). Text from there on is the sample value, which a scorer
    cuts at a token boundary (`="` may be one token). A tool without required arguments: its whole call,
    cut before the `)`."""
    first = next((p for p in spec.params if p.required), None)
    if first is None:  # no argument has to come: the name is all every call shares
        text = f"CALL({spec.name})"
        return text, len(text) - 1
    value = value_json(example_value(first.type))
    head = f"{spec.shorthand}(" if spec.shorthand is not None else f"CALL({spec.name}, {first.name}="
    return head + value + ")", len(head) + (1 if value.startswith('"') else 0)
