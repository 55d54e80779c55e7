"""The calls in a model's own text, read leniently (bench/bfcl.py's `free` condition: no grammar).

BFCL's prompting handlers read a response as a Python list of calls (`[f(a=1), g(b="x")]`, brackets and
backticks optional) and fail on anything else. A small model seldom writes only that, so this reader
is at least as lenient: first BFCL's reading of the whole text; when that fails, every call found in
the text, in order:
- the protocol's `CALL(name, key=value)` (the form the system prompt shows), read as `name(key=value)`;
- a Python call `name(key=value)` of one of the case's functions (its tool name or BFCL's own name);
- a JSON object `{"name": ..., "arguments" | "parameters": {...}}` (how native formats write calls).
Values are read as BFCL reads them (constants, lists, dicts, tuples, negative numbers, a bare name as
its text, arithmetic on numbers) but nothing is evaluated: arithmetic is folded here on numbers only.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable
from typing import Any

_PROTOCOL = re.compile(r"CALL\(\s*([A-Za-z_][\w.\-]*)\s*(?:,\s*|(?=\)))")
_CALL_START = re.compile(r"[A-Za-z_][\w.]*\(")
_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}

Call = tuple[str, dict[str, Any]]


class Unreadable(ValueError):
    """A value BFCL's reader would not take either."""


def _name(node: ast.expr) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _value(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner
        raise Unreadable("minus on a non-number")
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(v) for v in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _value(node.left), _value(node.right)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (left, right)):
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise Unreadable("too large a power")
            try:
                return _ARITHMETIC[type(node.op)](left, right)
            except (ArithmeticError, ValueError) as exc:
                raise Unreadable(str(exc)) from None
        raise Unreadable("arithmetic on non-numbers")
    if isinstance(node, ast.Call):
        return _call(node)[1] if node.keywords else ast.unparse(node)
    raise Unreadable(type(node).__name__)


def _call(node: ast.Call) -> Call:
    # positional arguments are ignored, as BFCL's reader ignores them
    return _name(node.func), {kw.arg: _value(kw.value) for kw in node.keywords if kw.arg is not None}


def _as_protocol_free(text: str) -> str:
    return _PROTOCOL.sub(lambda m: m.group(1) + "(", text)


def bfcl_reading(text: str) -> list[Call] | None:
    """BFCL's own reading of a whole response as a list of calls; None when it would fail."""
    body = text.strip("`\n ")
    body = ("" if body.startswith("[") else "[") + body + ("" if body.endswith("]") else "]")
    try:
        tree = ast.parse(body.strip().strip("'"), mode="eval").body
        elements = [tree] if isinstance(tree, ast.Call) else list(getattr(tree, "elts", None) or [])
        if not elements or not all(isinstance(e, ast.Call) for e in elements):
            return None
        return [_call(e) for e in elements]  # type: ignore[arg-type]
    except (SyntaxError, Unreadable, RecursionError, ValueError):
        return None


def _closing(text: str, start: int) -> int:
    """The index after the parenthesis that closes the one opened just before `start` (-1: none)."""
    depth, quote, i = 1, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _json_call(value: Any) -> Call | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    args = value.get("arguments", value.get("parameters"))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    return (value["name"], args) if isinstance(args, dict) else None


def scan_calls(text: str, known: Callable[[str], bool]) -> list[Call]:
    """Every call of a known function, or JSON call object, found anywhere in the text, in order."""
    found: list[tuple[int, int, Call]] = []  # (start, end, call)
    for match in _CALL_START.finditer(text):
        if (found and match.start() < found[-1][1]) or not known(match.group()[:-1]):
            continue
        end = _closing(text, match.end())
        if end < 0:
            continue
        try:
            node = ast.parse(text[match.start():end], mode="eval").body
            if isinstance(node, ast.Call):
                found.append((match.start(), end, _call(node)))
        except (SyntaxError, Unreadable, RecursionError, ValueError):
            continue
    decoder = json.JSONDecoder()
    json_end = 0
    for brace in re.finditer(r"\{", text):
        at = brace.start()
        if at < json_end or any(start <= at < end for start, end, _ in found):
            continue
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            continue
        call = _json_call(value)
        if call is not None:
            found.append((at, end, call))
            json_end = end
    return [call for _, _, call in sorted(found, key=lambda item: item[0])]


def read_calls(text: str, known: Callable[[str], bool]) -> list[Call]:
    """The calls of a free response: BFCL's reading when it succeeds, else every call found in it."""
    plain = _as_protocol_free(text)
    whole = bfcl_reading(plain)
    if whole is not None:
        return whole
    return scan_calls(plain, known)
