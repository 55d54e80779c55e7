"""Argument values in the tool-call protocol: the grammar of each ParamType, and reading it back.

Values are JSON literals. Scalars and lists are single expressions; an object (from a JSON Schema
tool) gets rules of its own, so that its keys come in schema order, required ones always, optional
ones possibly left out, with `", "` only between keys that are written:

    CALL(book, when={"day": "mon", "seats": 2})

For keys k0..kn-1 the rule `s<k>` ("the keys from k on, at least one") is `kv<k> s<k+1>?` plus,
when k is optional, `s<k+1>` (k left out); `kv<k>` writes `"key": value`, and its comma variant
`, "key": value` follows a written key. Only reachable variants are generated. Each `kv` rule maps
back to its field, which is how `ValueRules.read` turns the parse tree into a dict.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lark import Token, Tree

from agent.tooling.spec import Param, ParamType

_SLASH = re.compile(r"(?<!\\)/")  # a slash in a regex ends a Lark /regex/ literal unless escaped


def lark_literal(text: str) -> str:
    """A Lark string literal for `text` (valid for both lark and llguidance)."""
    out = ['"']
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def value_json(value: Any) -> str:
    """A value as written in a call (JSON)."""
    return json.dumps(value, ensure_ascii=False)


def minimal_value(ptype: ParamType, longest_choice: bool = False) -> Any:
    """The shortest value of this type (an object: its required keys only); of an enum the shortest
    choice, or with `longest_choice` the longest (an upper bound on what any choice takes)."""
    if ptype.kind == "literal":
        pick = max if longest_choice else min
        return pick(ptype.choices, key=lambda c: len(value_json(c)))
    if ptype.kind == "object":
        return {f.name: minimal_value(f.type, longest_choice) for f in ptype.fields if f.required}
    return {"str": "", "int": 0, "float": 0, "bool": False if longest_choice else True, "list": []}[ptype.kind]


def example_value(ptype: ParamType) -> Any:
    """A plausible value for a worked example: the first choice, one item, an object's required keys."""
    if ptype.kind == "literal":
        return ptype.choices[0]
    if ptype.kind == "list":
        assert ptype.item is not None
        return [example_value(ptype.item)]
    if ptype.kind == "object":
        return {f.name: example_value(f.type) for f in ptype.fields if f.required}
    return {"str": "text", "int": 1, "float": 1.5, "bool": True}[ptype.kind]


class ValueRules:
    """The value grammar of one turn grammar: `expr` writes it, `read` reads its parse trees."""

    def __init__(self) -> None:
        self.lines: list[str] = []  # rules for object values (appended to the grammar)
        self.fields: dict[str, Param] = {}  # kv rule name -> the field it writes

    def expr(self, ptype: ParamType, literal_terms: list[str], literal_name: str) -> str:
        """The grammar expression for one value of this type. Enum terminals go to `literal_terms`
        named `literal_name` (nested ones get a suffix); object rules go to `self.lines`."""
        if ptype.kind == "str" and ptype.pattern is not None:  # a JSON string of the tool's own language
            regex = _SLASH.sub(r"\\/", ptype.pattern)
            literal_terms.append(f'{literal_name}: /"(?:{regex})"/')
            return literal_name
        if ptype.kind == "str":
            return "STRING"
        if ptype.kind == "int":
            return "INT"
        if ptype.kind == "float":
            return "FLOAT"
        if ptype.kind == "bool":
            return "BOOL"
        if ptype.kind == "literal":
            alts = " | ".join(lark_literal(value_json(c)) for c in ptype.choices)
            literal_terms.append(f"{literal_name}: {alts}")
            return literal_name
        if ptype.kind == "object":
            return self._object(ptype.fields, literal_terms, literal_name)
        assert ptype.kind == "list" and ptype.item is not None
        item = self.expr(ptype.item, literal_terms, literal_name)
        return f'"[" ({item} (", " {item})*)? "]"'

    def _object(self, fields: tuple[Param, ...], literal_terms: list[str], base: str) -> str:
        rule = "obj_" + base.lower()
        n = len(fields)
        if n == 0:
            return '"{}"'
        values = [self.expr(f.type, literal_terms, f"{base}_{k}") for k, f in enumerate(fields)]
        nullable = [False] * n + [True]  # nullable[k]: every key from k on is optional
        for k in reversed(range(n)):
            nullable[k] = not fields[k].required and nullable[k + 1]

        def seq(k: int, comma: bool) -> str:
            return f"{rule}_s{k}{'c' if comma else ''}"

        def ref(k: int, comma: bool) -> list[tuple[int, bool]]:
            return [] if k == n else [(k, comma)]

        def ref_text(k: int, comma: bool) -> str:
            return "" if k == n else " " + seq(k, comma) + ("?" if nullable[k] else "")

        todo, done = [(0, False)], set()
        while todo:
            k, comma = todo.pop()
            if (k, comma) in done:
                continue
            done.add((k, comma))
            kv = f"{rule}_k{k}{'c' if comma else ''}"
            key = lark_literal((", " if comma else "") + value_json(fields[k].name) + ": ")
            self.lines.append(f"{kv}: {key} {values[k]}")
            self.fields[kv] = fields[k]
            alts = [kv + ref_text(k + 1, True)]
            todo += ref(k + 1, True)
            if not fields[k].required and k + 1 < n:
                alts.append(seq(k + 1, comma))
                todo += ref(k + 1, comma)
            self.lines.append(f"{seq(k, comma)}: " + " | ".join(alts))
        self.lines.append(f'{rule}: "{{"{ref_text(0, False)} "}}"')
        return rule

    def read(self, children: list[Any], ptype: ParamType) -> Any:
        """The typed value from the children of the node that holds it (an argument or a key)."""
        nodes = [c for c in children if isinstance(c, (Token, Tree))]
        if not nodes and ptype.kind == "object":  # `{}` is an anonymous token: filtered out of the tree
            return {}
        if ptype.kind == "list":
            assert ptype.item is not None
            return [self._one(node, ptype.item) for node in nodes]
        return self._one(nodes[0], ptype)

    def _one(self, node: Token | Tree, ptype: ParamType) -> Any:
        if ptype.kind == "object":
            out: dict[str, Any] = {}
            if isinstance(node, Tree):
                self._collect(node, out)
            return out
        if ptype.kind == "float":
            return float(node)
        return json.loads(str(node))

    def _collect(self, tree: Tree, out: dict[str, Any]) -> None:
        for child in tree.children:
            if isinstance(child, Tree):
                field = self.fields.get(child.data)
                if field is not None:
                    out[field.name] = self.read(child.children, field.type)
                else:  # one of this object's key-sequence rules
                    self._collect(child, out)
