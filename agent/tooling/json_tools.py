"""Tools described in JSON Schema: OpenAI-style function definitions (a `--tools x.json` file) and MCP
servers' input schemas, mapped onto ParamType so that both grammars constrain a call exactly.

What maps: string, integer, number, boolean, enum (of strings, numbers or booleans), const, arrays
of one item type, objects with listed properties (required or optional, with defaults). Anything
else (oneOf, $ref, format, minimum, ...) is a ToolError naming the tool and the JSON path: the
grammar could not enforce it, and a call the grammar allows must be one the tool accepts.
"""

from __future__ import annotations

import json
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.tooling.spec import TOOL_NAME_CHARS, Param, ParamType, ToolError

# Keys that only describe (the model may see them; nothing to enforce).
_ANNOTATIONS = {"title", "description", "examples", "$comment", "$schema", "deprecated", "readOnly",
                "writeOnly", "default"}
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


@dataclass(frozen=True)
class JsonTool:
    """One function definition read from JSON: what the model sees; the implementation comes from elsewhere."""

    name: str
    description: str
    params: tuple[Param, ...]
    schema: dict[str, Any]  # its own `parameters` object, as written
    # `"annotations": {"readOnlyHint": true}`, as MCP marks a tool without side effects; anything
    # else is a side effect (asks first), the safe reading of a definition that does not say
    read_only: bool = False


def _unsupported(node: dict[str, Any], allowed: set[str], path: str) -> None:
    for key in node:
        if key not in allowed and key not in _ANNOTATIONS:
            raise ToolError(f"{path}: {json.dumps(key)} is not supported")


def _enum_type(values: Any, path: str) -> ParamType:
    if not isinstance(values, list) or not values:
        raise ToolError(f"{path}: enum must be a non-empty list")
    for value in values:
        if value is None or not isinstance(value, (str, int, float, bool)):
            raise ToolError(f"{path}: enum values must be strings, numbers or booleans, not {json.dumps(value)}")
    return ParamType("literal", choices=tuple(values))


def _without_null(node: dict[str, Any], path: str) -> dict[str, Any]:
    """`X or null` (`anyOf: [X, {"type": "null"}]`, `"type": [t, "null"]`, how pydantic writes an
    Optional) as X: the grammar never writes null, and every value it writes is still valid."""
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
            other = branches[1 - branches.index({"type": "null"})]
            if isinstance(other, dict):
                rest = {k: v for k, v in node.items() if k != key and (k != "default" or v is not None)}
                return {**other, **rest}
    kind = node.get("type")
    if isinstance(kind, list) and len(kind) == 2 and "null" in kind:
        rest = {k: v for k, v in node.items() if k != "default" or v is not None}
        return {**rest, "type": kind[1 - kind.index("null")]}
    return node


def param_type(node: Any, path: str) -> ParamType:
    """The ParamType of one JSON Schema node; ToolError naming `path` for what cannot be mapped."""
    if not isinstance(node, dict):
        raise ToolError(f"{path}: a schema must be a JSON object, not {json.dumps(node)}")
    node = _without_null(node, path)
    # first what cannot be mapped at all (oneOf, $ref, ...): that is the error worth reading
    _unsupported(node, {"type", "enum", "const", "items", "properties", "required", "additionalProperties"}, path)
    if "enum" in node or "const" in node:
        _unsupported(node, {"enum", "const", "type"}, path)
        ptype = _enum_type(node["enum"] if "enum" in node else [node["const"]], path)
        kind = node.get("type")
        if kind is not None:
            wanted = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}.get(kind)
            if wanted is None or not all(isinstance(c, wanted) and (kind == "boolean") == isinstance(c, bool)
                                         for c in ptype.choices):
                raise ToolError(f"{path}: enum values do not all have type {json.dumps(kind)}")
        return ptype
    kind = node.get("type")
    if kind is None:
        raise ToolError(f"{path}: needs a \"type\" (or an \"enum\")")
    if not isinstance(kind, str):
        raise ToolError(f"{path}: \"type\": {json.dumps(kind)} is not supported (one type per value)")
    if kind in _SCALARS:
        _unsupported(node, {"type"}, path)
        return ParamType(_SCALARS[kind])
    if kind == "array":
        _unsupported(node, {"type", "items"}, path)
        if "items" not in node:
            raise ToolError(f"{path}: an array needs \"items\" (the type of its items)")
        item = param_type(node["items"], f"{path}.items")
        if item.kind == "list":
            raise ToolError(f"{path}.items: arrays of arrays are not supported")
        return ParamType("list", item=item)
    if kind == "object":
        return ParamType("object", fields=object_fields(node, path, identifiers=False))
    raise ToolError(f"{path}: \"type\": {json.dumps(kind)} is not supported")


def object_fields(node: dict[str, Any], path: str, identifiers: bool) -> tuple[Param, ...]:
    """The properties of an object schema as Params, in schema order. `identifiers`: the keys become
    keyword arguments (`CALL(tool, key=...)`, a Python function's parameters), so they must be names."""
    _unsupported(node, {"type", "properties", "required", "additionalProperties"}, path)
    if node.get("type", "object") != "object":
        raise ToolError(f"{path}: must have \"type\": \"object\"")
    extra = node.get("additionalProperties", True)
    if not isinstance(extra, bool):  # a schema for unnamed keys: the grammar only writes named ones
        raise ToolError(f"{path}.additionalProperties: only true or false is supported")
    properties = node.get("properties", {})
    required = node.get("required", [])
    if not isinstance(properties, dict):
        raise ToolError(f"{path}.properties: must be a JSON object")
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ToolError(f"{path}.required: must be a list of property names")
    for name in required:
        if name not in properties:
            raise ToolError(f"{path}.required: {json.dumps(name)} is not one of the properties")
    if not properties and not identifiers:
        raise ToolError(f"{path}: an object needs its \"properties\" (free-form objects are not supported)")
    params = []
    for name, sub in properties.items():
        where = f"{path}.properties.{name}"
        if identifiers and (not name.isidentifier() or keyword.iskeyword(name)):
            raise ToolError(f"{where}: an argument name must be a Python identifier")
        ptype = param_type(sub, where)
        is_required = name in required
        default = None
        # a null default (an Optional's) is no default: the key is left out and the tool's own applies
        if not is_required and isinstance(sub, dict) and sub.get("default") is not None:
            try:
                default = ptype.check(sub["default"])
            except TypeError as exc:
                raise ToolError(f"{where}.default: does not match the type: {exc}") from None
        params.append(Param(name, ptype, is_required, default))
    return tuple(params)


def parameters_params(schema: Any, where: str) -> tuple[Param, ...]:
    """A tool's arguments from its `parameters` (OpenAI) / `inputSchema` (MCP) object schema."""
    if schema is None:
        return ()
    if not isinstance(schema, dict):
        raise ToolError(f"{where}: parameters must be a JSON object schema")
    return object_fields(schema, where, identifiers=True)


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name or name[0].isdigit() or not set(name) <= TOOL_NAME_CHARS:
        raise ToolError(f"{where}: the name {json.dumps(name)} is not valid: a tool name must be lower-case "
                        "letters, digits and _ (not starting with a digit)")
    return name


def json_tool(entry: Any, origin: str, index: int) -> JsonTool:
    """One definition: `{"type": "function", "function": {...}}` or the bare `function` object.
    `origin` (the file) and `index` (its place in the list) name it in errors."""
    if isinstance(entry, dict) and entry.get("type") == "function" and "function" in entry:
        entry = entry["function"]
    if not isinstance(entry, dict):
        raise ToolError(f"{origin}: entry {index}: a tool must be a JSON object with \"name\", \"description\" "
                        "and \"parameters\"")
    name = check_name(entry.get("name"), f"{origin}: entry {index}")
    where = f"{origin}: tool {json.dumps(name)}"
    description = entry.get("description", "")
    if not isinstance(description, str) or not description.strip():
        raise ToolError(f"{where}: needs a \"description\" (what the model sees)")
    schema = entry.get("parameters") or {"type": "object", "properties": {}}
    params = parameters_params(schema, f"{where}: parameters")
    annotations = entry.get("annotations") or {}
    read_only = isinstance(annotations, dict) and annotations.get("readOnlyHint") is True
    return JsonTool(name, description.strip(), params, schema, read_only)


def read_json_file(file: Path, name: str) -> Any:
    """A JSON file's value; ToolError when it cannot be read (`name` is how the message names it) or
    is not JSON (the message says where)."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ToolError(f"cannot read {name}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ToolError(f"{file}: not valid JSON: {exc}") from None


def read_tools_json(path: str | Path) -> list[JsonTool]:
    """The tools of a `--tools x.json` file (a list of definitions, or one); ToolError naming the problem."""
    file = Path(path).expanduser()
    data = read_json_file(file, f"tools file {str(file)!r}")
    entries = data if isinstance(data, list) else [data]
    tools = [json_tool(entry, str(path), i) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            raise ToolError(f"{file}: tool {json.dumps(tool.name)} is defined twice")
        seen.add(tool.name)
    return tools
