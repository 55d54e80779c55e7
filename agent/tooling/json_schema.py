"""Tools as JSON Schema: what a chat template's `tools` argument shows the model, and what the
native tool-call grammars (agent.grammar.native) constrain a call's arguments to.

One mapping from ParamType: str -> string, int -> integer, float -> number, bool -> boolean,
Literal[...] -> enum (with its type when all values share one), list[X] -> array of X, an object
(from a JSON Schema tool) -> object of its fields. A tool described in JSON Schema shows a template
its own schema; the grammar always gets the strict rendering of its ParamTypes, which agrees with
what `ParamType.check` accepts.
"""

from __future__ import annotations

from typing import Any

from agent.tooling.registry import ToolRegistry
from agent.tooling.spec import Param, ParamType, ToolSpec

_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
# The protocol's integers have at most 18 digits (they fit SQLite and every tool's int64); a strict
# schema says so, so a grammar cannot let a model write a 40-digit id.
INT_BOUND = 10**18 - 1
# A strict number is finite: a grammar could otherwise write 9e999, which JSON reads as infinity (the
# runner refuses it, but the call is lost). llguidance writes a bounded number without an exponent, so the
# bound is the integers' (a bound like 1e300 is more digits than it can make a regex of).
FLOAT_BOUND = 1e18


def type_schema(ptype: ParamType, strict: bool = False) -> dict[str, Any]:
    """The JSON Schema of one argument type (`strict`: integers bounded to 18 digits, numbers finite)."""
    if ptype.kind == "literal":
        schema: dict[str, Any] = {"enum": list(ptype.choices)}
        # bool before int: True is an int to Python but a boolean to JSON Schema
        kinds = {"boolean" if isinstance(c, bool) else "integer" if isinstance(c, int)
                 else "number" if isinstance(c, float) else "string" for c in ptype.choices}
        if len(kinds) == 1:
            schema = {"type": kinds.pop(), **schema}
        return schema
    if ptype.kind == "list":
        assert ptype.item is not None
        return {"type": "array", "items": type_schema(ptype.item, strict)}
    if ptype.kind == "object":
        return fields_schema(ptype.fields, strict)
    if strict and ptype.kind == "int":
        return {"type": "integer", "minimum": -INT_BOUND, "maximum": INT_BOUND}
    if ptype.kind == "str" and ptype.pattern is not None:  # JSON Schema's pattern is unanchored: anchor it
        return {"type": "string", "pattern": f"^(?:{ptype.pattern})$"}
    if strict and ptype.kind == "float":
        return {"type": "number", "minimum": -FLOAT_BOUND, "maximum": FLOAT_BOUND}
    return {"type": _JSON_TYPES[ptype.kind]}


def parameters_schema(spec: ToolSpec, strict: bool = False) -> dict[str, Any]:
    """The object schema of a tool's arguments; `strict` forbids keys the tool does not take
    (the grammar uses it; a template only shows the schema, where the extra key is noise)."""
    if not strict and spec.json_schema is not None:
        return spec.json_schema
    return fields_schema(spec.params, strict)


def fields_schema(params: tuple[Param, ...], strict: bool) -> dict[str, Any]:
    """The object schema of named fields (a tool's arguments, or an object argument's keys)."""
    properties: dict[str, Any] = {}
    for p in params:
        prop = type_schema(p.type, strict)
        if not p.required and p.default is not None:  # None: no default (a JSON tool's optional key)
            prop["default"] = p.default
        properties[p.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": [p.name for p in params if p.required]}
    if strict:
        schema["additionalProperties"] = False
    return schema


def tool_schema(spec: ToolSpec) -> dict[str, Any]:
    """One tool in the OpenAI function form that Hugging Face chat templates read."""
    return {"type": "function",
            "function": {"name": spec.name, "description": spec.description, "parameters": parameters_schema(spec)}}


def tool_schemas(registry: ToolRegistry | None) -> list[dict[str, Any]]:
    """Every registered tool, in registration order, for `apply_chat_template(..., tools=...)`."""
    return [] if registry is None else [tool_schema(spec) for spec in registry]
