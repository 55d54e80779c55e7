"""BFCL function descriptions as the shell's tools (for bench/bfcl.py).

BFCL writes its functions in its own dialect of JSON Schema ("dict", "float", "tuple", "any", keys like
"optional" and "format") with names such as `math.factorial` or `calculate_BMI`. The shell's tool names
are lower-case letters, digits and `_`, and its grammar takes plain JSON Schema, so each case's
functions are mapped here, reversibly:

- names: lower-cased, every other character (the dot, a dash) becomes `_`; a clash within one case gets
  `_2`, `_3`. `ToolSet.original` maps every name back, so calls are checked under BFCL's own names.
- argument names that are not Python identifiers (or are keywords) get the same treatment, mapped back.
- types: dict -> object (a dict without properties cannot be written by the grammar: it becomes a string
  holding JSON, read back as a dict when it parses), float -> number, tuple -> array, any -> string (the
  checker's own reading of "any"); an array without items holds strings; an array of arrays holds
  strings (the grammar writes no nested arrays). Keys the grammar cannot enforce (default, optional,
  format, maximum, minItems, ...) are dropped: the description keeps what the model needs to read.

Every tool's implementation is the same refusal: BFCL checks the call, not its result, so nothing runs
and the island says so.
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass
from typing import Any

from agent.tooling.json_tools import json_tool
from agent.tooling.registry import ToolRegistry
from agent.tooling.spec import ToolSpec, check_fields

NOT_RUN = "not run: the benchmark checks the call, not its result"
_TYPES = {"integer": "integer", "int": "integer", "float": "number", "number": "number", "string": "string",
          "str": "string", "boolean": "boolean", "bool": "boolean", "any": "string"}


def not_run(**_: Any) -> str:
    """What every benchmark tool 'returns': nothing runs."""
    return NOT_RUN


def _safe(name: str, taken: set[str], identifier: bool) -> str:
    """A name the registry (or, `identifier`, a keyword argument) can take, distinct from `taken`."""
    base = re.sub(r"[^a-z0-9_]", "_", name.lower()) or "f"
    if base[0].isdigit():
        base = "f_" + base
    if identifier and keyword.iskeyword(base):
        base += "_"
    out, n = base, 2
    while out in taken:
        out, n = f"{base}_{n}", n + 1
    taken.add(out)
    return out


def _items(node: dict[str, Any]) -> dict[str, Any]:
    items = node.get("items")
    if not isinstance(items, dict) or items.get("type") in ("array", "tuple"):
        return {"type": "string"}
    return schema_of(items)


def schema_of(node: dict[str, Any]) -> dict[str, Any]:
    """One BFCL parameter as plain JSON Schema the grammar can enforce (see the module docstring)."""
    kind = node.get("type", "string")
    out: dict[str, Any] = {}
    if node.get("description"):
        out["description"] = " ".join(str(node["description"]).split())
    if "enum" in node and isinstance(node["enum"], list) and node["enum"]:
        values = [v for v in node["enum"] if isinstance(v, (str, int, float, bool)) and v is not None]
        if values and len({type(v) for v in values}) == 1:
            return {**out, "enum": values}
    if kind in ("array", "tuple"):
        return {**out, "type": "array", "items": _items(node)}
    if kind in ("dict", "object"):
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            return {**out, "type": "string"}  # free-form: JSON text, parsed back (see to_bfcl_value)
        required = [r for r in node.get("required", []) if r in props]
        return {**out, "type": "object", "properties": {k: schema_of(v) for k, v in props.items()},
                "required": required}
    return {**out, "type": _TYPES.get(str(kind), "string")}


@dataclass
class Mapped:
    """One BFCL function as a tool: its registry name, and each argument name back to BFCL's."""

    original: str
    name: str
    args: dict[str, str]  # tool argument name -> BFCL parameter name
    bfcl: dict[str, Any]  # the function description as BFCL wrote it


class ToolSet:
    """One case's functions as a ToolRegistry, and the way back from a call to BFCL's answer form."""

    def __init__(self, functions: list[dict[str, Any]]) -> None:
        taken: set[str] = set()
        self.by_name: dict[str, Mapped] = {}
        specs = []
        for fn in functions:
            name = _safe(fn["name"], taken, identifier=False)
            params = fn.get("parameters") or {}
            props = params.get("properties") or {}
            plain = {k for k in props if k.isidentifier() and not keyword.iskeyword(k)}
            arg_taken = set(plain)
            back = {k: k if k in plain else _safe(k, arg_taken, identifier=True) for k in props}
            args = {v: k for k, v in back.items()}
            schema = {"type": "object",
                      "properties": {back[k]: schema_of(v) for k, v in props.items()},
                      "required": [back[r] for r in params.get("required", []) if r in back]}
            description = " ".join(str(fn.get("description") or fn["name"]).split())
            tool = json_tool({"name": name, "description": description, "parameters": schema}, "bfcl", 0)
            specs.append(ToolSpec(name=name, description=tool.description, params=tool.params, func=not_run,
                                  pure=True, source="bfcl", in_process=True, json_schema=tool.schema))
            self.by_name[name] = Mapped(fn["name"], name, args, fn)
        self.registry = ToolRegistry(specs)
        self.by_original = {m.original: m for m in self.by_name.values()}

    def lookup(self, name: str) -> Mapped | None:
        """The function a call names: its tool name, or BFCL's own name (a free answer may write either)."""
        return self.by_name.get(name) or self.by_original.get(name)

    def well_formed(self, name: str, args: dict[str, Any]) -> bool:
        """A call the grammar could have written: a function of the case, arguments its schema takes."""
        mapped = self.lookup(name)
        if mapped is None:
            return False
        back = {param: arg for arg, param in mapped.args.items()}
        try:
            check_fields(self.registry.get(mapped.name).params, {back.get(k, k): v for k, v in args.items()})
        except (TypeError, ValueError):  # FieldProblem is a TypeError
            return False
        return True

    def to_bfcl(self, name: str, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """A call in BFCL's answer form `{original_name: {param: value}}`; an unknown name is kept as written."""
        mapped = self.lookup(name)
        if mapped is None:
            return {name: dict(args)}
        props = (mapped.bfcl.get("parameters") or {}).get("properties") or {}
        out = {}
        for key, value in args.items():
            param = mapped.args.get(key, key)
            out[param] = to_bfcl_value(value, props.get(param))
        return {mapped.original: out}


def to_bfcl_value(value: Any, node: dict[str, Any] | None) -> Any:
    """A free-form dict argument written as JSON text becomes the dict it spells (else stays as written)."""
    if isinstance(node, dict) and node.get("type") == "dict" and not node.get("properties") and isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value
