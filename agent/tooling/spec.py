"""What a tool is: `@tool` turns a plain Python function into a ToolSpec with a typed call signature.

A tool is any function decorated with `@tool`. Its name, its description (first docstring
line) and its argument schema (from the signature's type hints) decide what the model may
write: the turn grammar is built from this registry, so only registered names with
well-typed arguments can ever be generated.

    from agent.tooling import tool

    @tool(pure=True, timeout=5.0)
    def weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        \"\"\"Current weather for a city.\"\"\"
        ...
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, overload

from agent.tooling.origin import ToolOrigin

ToolFunction = TypeVar("ToolFunction", bound=Callable[..., Any])

# Tools with their own short call form in the protocol (README: SEARCH("q"), LOAD(12)).
SHORTHAND = {"search": "SEARCH", "load": "LOAD"}

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
TOOL_NAME_CHARS = frozenset(_NAME_CHARS)  # for tools described elsewhere (JSON Schema, MCP)


class ToolError(Exception):
    """A tool definition or registration is invalid; the message names the tool and the problem."""


class ToolFailure(Exception):
    """Raise this inside a tool for an expected failure: the island shows `error: <message>` as is.

    Any other exception is shown as `error: <ExceptionType>: <message>`.
    """


@dataclass(frozen=True)
class Pattern:
    """The language of a str argument, as a regular expression the whole value must match: the grammar
    lets a model write nothing else, and a call from elsewhere that does not match is refused.

        def calc(expr: Annotated[str, Pattern(r"[0-9 +*/().-]+")]) -> str: ...

    The value is a JSON string in a call: no `"`, `\\` or control characters in what the pattern allows."""

    regex: str

    def checked(self, where: str) -> str:
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ToolError(f"{where}: the Pattern is not a regular expression ({exc})") from exc
        if any(c in self.regex for c in '"\n'):
            raise ToolError(f"{where}: a Pattern may not hold a quote or a newline (the value is a JSON string)")
        return self.regex


@dataclass(frozen=True)
class ParamType:
    """The type of one argument: str, int, float, bool, a Literal of values, a list of one of these,
    or (from JSON Schema tools) an object with named fields."""

    kind: str  # "str" | "int" | "float" | "bool" | "literal" | "list" | "object"
    choices: tuple[Any, ...] = ()  # for "literal"
    item: ParamType | None = None  # for "list"
    fields: tuple[Param, ...] = ()  # for "object": its keys in schema order
    pattern: str | None = None  # for "str": a regular expression the whole text must match (Pattern)

    def text(self) -> str:
        """The type as written in the call signature (Python syntax; an object as `{key: type, ...}`)."""
        if self.kind == "literal":
            return "Literal[" + ", ".join(_json_text(c) for c in self.choices) + "]"
        if self.kind == "list":
            assert self.item is not None
            return f"list[{self.item.text()}]"
        if self.kind == "object":
            return "{" + ", ".join(_param_text(f) for f in self.fields) + "}"
        return self.kind

    def check(self, value: Any) -> Any:
        """Return the value if it has this type (ints accepted for floats), else raise TypeError."""
        if self.kind == "str":
            if isinstance(value, str):
                if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
                    raise TypeError(f"expected text matching /{self.pattern}/, got {_json_text(value)}")
                return value
        elif self.kind == "bool":
            if isinstance(value, bool):
                return value
        elif self.kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif self.kind == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # JSON reads 1e999 as inf: no tool means that, and no JSON can carry it on (MCP)
                if not math.isfinite(value):
                    raise TypeError(f"expected a finite number, got {value!r}")
                return float(value)
        elif self.kind == "literal":
            for choice in self.choices:
                if value == choice and type(value) is type(choice):
                    return value
                # JSON does not tell 1 from 1.0: a float choice (JSON Schema enums only) takes an equal int
                if isinstance(choice, float) and isinstance(value, int) and not isinstance(value, bool) \
                        and value == choice:
                    return choice
            expected = ", ".join(_json_text(c) for c in self.choices)
            raise TypeError(f"expected one of {expected}, got {_json_text(value)}")
        elif self.kind == "list":
            if isinstance(value, list):
                assert self.item is not None
                return [self.item.check(v) for v in value]
        elif self.kind == "object":
            if isinstance(value, dict):
                return self._check_object(value)
        raise TypeError(f"expected {self.text()}, got {type(value).__name__} {_json_text(value)}")

    def _check_object(self, value: dict[str, Any]) -> dict[str, Any]:
        """The object with its fields checked, in schema order; TypeError naming the key at fault."""
        try:
            return check_fields(self.fields, value)
        except FieldProblem as problem:
            key = _json_text(problem.name)
            if problem.kind == "unexpected":
                known = ", ".join(sorted(f.name for f in self.fields)) or "none"
                raise TypeError(f"unexpected key {key} (keys: {known})") from None
            if problem.kind == "missing":
                raise TypeError(f"missing required key {key}") from None
            raise TypeError(f"key {key}: {problem.detail}") from None

    def to_json(self) -> dict[str, Any]:
        """A JSON-schema-like description (for `agent tools list --json`)."""
        if self.kind == "literal":
            return {"enum": list(self.choices)}
        if self.kind == "list":
            assert self.item is not None
            return {"type": "array", "items": self.item.to_json()}
        if self.kind == "object":
            return {"type": "object",
                    "properties": {f.name: {**f.type.to_json(), **({} if f.required else {"default": f.default})}
                                   for f in self.fields},
                    "required": [f.name for f in self.fields if f.required]}
        return {"type": {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}[self.kind]}


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class Param:
    """One keyword argument of a tool."""

    name: str
    type: ParamType
    required: bool
    default: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, **self.type.to_json(), "required": self.required}
        if not self.required:
            out["default"] = self.default
        return out


class FieldProblem(TypeError):
    """What is wrong with one named value among fields: `unexpected` (no such field), `missing` (a
    required one is absent) or `wrong` (its type check failed; `detail` says how)."""

    def __init__(self, kind: str, name: str, detail: str = "") -> None:
        super().__init__(f"{kind} {name!r}: {detail}")
        self.kind, self.name, self.detail = kind, name, detail


def check_fields(fields: tuple[Param, ...], value: dict[str, Any]) -> dict[str, Any]:
    """The named values checked against `fields` (a tool's arguments, an object's keys), in the fields'
    order, optional ones left out when absent; FieldProblem at the first fault."""
    known = {f.name for f in fields}
    for key in value:
        if key not in known:
            raise FieldProblem("unexpected", key)
    out: dict[str, Any] = {}
    for f in fields:
        if f.name in value:
            try:
                out[f.name] = f.type.check(value[f.name])
            except TypeError as exc:
                raise FieldProblem("wrong", f.name, str(exc)) from None
        elif f.required:
            raise FieldProblem("missing", f.name)
    return out


@dataclass
class ToolSpec:
    """A registered tool: what the model sees (call signature, description) and how to run it."""

    name: str
    description: str
    params: tuple[Param, ...]
    func: Callable[..., Any]
    pure: bool = True
    timeout: float = 10.0
    source: str = ""  # where it came from: "builtin", a file path, or an entry point
    # Run in the agent's own process instead of a worker process: the timeout cannot stop it.
    in_process: bool = False
    # A tool described in JSON Schema (a --tools .json file, an MCP server) keeps its own parameters
    # schema: a chat template shows the model that, with its descriptions, rather than our rendering.
    json_schema: dict[str, Any] | None = None
    origin: ToolOrigin | None = None  # where it came from, as a session records it (agent.tooling.origin)
    call_signature: str = field(init=False)

    def __post_init__(self) -> None:
        self.call_signature = _call_signature(self.name, self.params)

    @property
    def shorthand(self) -> str | None:
        """'SEARCH' / 'LOAD' when this tool has the protocol's short form (one str/int argument)."""
        form = SHORTHAND.get(self.name)
        if form is None or len(self.params) != 1:
            return None
        expected = "str" if self.name == "search" else "int"
        return form if self.params[0].type.kind == expected and self.params[0].required else None

    def required_only(self) -> ToolSpec:
        """This tool with its optional parameters left out (its JSON Schema too, as a template shows it)."""
        params = tuple(p for p in self.params if p.required)
        if len(params) == len(self.params):
            return self
        schema = self.json_schema
        if schema is not None:
            kept = {p.name for p in params}
            schema = {**schema, "properties": {k: v for k, v in schema.get("properties", {}).items() if k in kept}}
        return dataclasses.replace(self, params=params, json_schema=schema)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "call_signature": self.call_signature,
            "description": self.description,
            "pure": self.pure,
            "timeout": self.timeout,
            "in_process": self.in_process,
            "params": [p.to_json() for p in self.params],
            "source": self.source,
            "origin": self.origin.to_json() if self.origin is not None else None,
        }


def _param_text(p: Param) -> str:
    """`name: type`, with ` = default` for an optional one."""
    text = f"{p.name}: {p.type.text()}"
    if p.required:
        return text
    # None is never a Python tool's default (no type accepts it): a JSON tool's optional key without one
    return f"{text} (optional)" if p.default is None else f"{text} = {_json_text(p.default)}"


def _call_signature(name: str, params: tuple[Param, ...]) -> str:
    one = _param_text
    form = SHORTHAND.get(name)
    shorthand_kind = "str" if name == "search" else "int"
    if form and len(params) == 1 and params[0].required and params[0].type.kind == shorthand_kind:
        return f"{form}({one(params[0])})"
    return "CALL(" + ", ".join([name] + [one(p) for p in params]) + ")"


def _param_type(hint: Any, where: str) -> ParamType:
    """Map a type hint to a ParamType; raise ToolError naming the place for unsupported hints."""
    if get_origin(hint) is Annotated:  # Annotated[str, Pattern(...)]; other annotations are not ours
        base, *extras = get_args(hint)
        patterns = [extra for extra in extras if isinstance(extra, Pattern)]
        if not patterns:
            return _param_type(base, where)
        if base is not str:
            raise ToolError(f"{where}: a Pattern applies to str only, not {base!r}")
        return ParamType("str", pattern=patterns[0].checked(where))
    if hint is str:
        return ParamType("str")
    if hint is bool:
        return ParamType("bool")
    if hint is int:
        return ParamType("int")
    if hint is float:
        return ParamType("float")
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if not choices or not all(isinstance(c, (str, int, bool)) for c in choices):
            raise ToolError(f"{where}: Literal values must be str, int or bool, got {hint!r}")
        return ParamType("literal", choices=tuple(choices))
    if origin is list:  # list[str] and typing.List[str] alike
        args = get_args(hint)
        if len(args) != 1:
            raise ToolError(f"{where}: list needs one item type, e.g. list[str]; got {hint!r}")
        item = _param_type(args[0], where)
        if item.kind == "list":
            raise ToolError(f"{where}: nested lists are not supported ({hint!r})")
        return ParamType("list", item=item)
    if origin in (Union, types.UnionType):  # Optional[str], str | None
        raise ToolError(f"{where}: optional/union types are not supported ({hint!r}); give a default value instead")
    raise ToolError(
        f"{where}: unsupported argument type {hint!r}; use str, int, float, bool, Literal[...] or list[...]"
    )


def make_spec(func: Callable[..., Any], name: str | None = None, pure: bool = True,
              timeout: float = 10.0, source: str = "", in_process: bool = False) -> ToolSpec:
    """Build a ToolSpec from a function's name, docstring and annotated signature."""
    tool_name = name or func.__name__
    where = f"tool {tool_name!r} ({getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')})"
    if not tool_name or tool_name[0].isdigit() or not set(tool_name) <= _NAME_CHARS:
        raise ToolError(f"{where}: a tool name must be lower-case letters, digits and _ (not starting with a digit)")
    doc = inspect.getdoc(func) or ""
    description = doc.strip().splitlines()[0].strip() if doc.strip() else ""
    if not description:
        raise ToolError(f"{where}: a tool needs a docstring; its first line is the description the model sees")
    if not (timeout > 0):
        raise ToolError(f"{where}: timeout must be > 0 seconds, got {timeout!r}")
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolvable forward references and the like
        raise ToolError(f"{where}: cannot read the type hints ({exc})") from exc
    params: list[Param] = []
    for p in inspect.signature(func).parameters.values():
        pwhere = f"{where}, argument {p.name!r}"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolError(f"{pwhere}: *args/**kwargs are not supported; list each argument")
        if p.kind is p.POSITIONAL_ONLY:
            raise ToolError(f"{pwhere}: positional-only arguments are not supported (calls use keywords)")
        if p.name not in hints:
            raise ToolError(f"{pwhere}: missing type hint (str, int, float, bool, Literal[...] or list[...])")
        ptype = _param_type(hints[p.name], pwhere)
        required = p.default is inspect.Parameter.empty
        default = None if required else p.default
        if not required:
            try:
                default = ptype.check(default)
            except TypeError as exc:
                raise ToolError(f"{pwhere}: default {default!r} does not match the type: {exc}") from exc
        params.append(Param(p.name, ptype, required, default))
    return ToolSpec(name=tool_name, description=description, params=tuple(params), func=func,
                    pure=pure, timeout=float(timeout), source=source, in_process=in_process)


_SPEC_ATTR = "__agent_tool__"


@overload
def tool(func: ToolFunction) -> ToolFunction: ...


@overload
def tool(*, name: str | None = None, pure: bool = True, timeout: float = 10.0,
         in_process: bool = False) -> Callable[[ToolFunction], ToolFunction]: ...


def tool(func: ToolFunction | None = None, *, name: str | None = None, pure: bool = True,
         timeout: float = 10.0, in_process: bool = False) -> ToolFunction | Callable[[ToolFunction], ToolFunction]:
    """Mark a function as a tool. Use as `@tool` or `@tool(name=..., pure=..., timeout=..., in_process=...)`.

    The function stays callable as before; its ToolSpec is attached as `func.__agent_tool__`
    and picked up by `ToolRegistry.load_file`/`load_module`.

    A tool runs in a worker process that is killed at its timeout. `in_process=True` runs it in
    the agent's own process instead (for a tool that must change the agent's memory): then a tool
    that times out cannot be stopped and keeps running.
    """

    def wrap(f: ToolFunction) -> ToolFunction:
        setattr(f, _SPEC_ATTR, make_spec(f, name=name, pure=pure, timeout=timeout, source=f.__module__,
                                         in_process=in_process))
        return f

    if func is not None:
        return wrap(func)
    return wrap


def spec_of(obj: Any) -> ToolSpec | None:
    """The ToolSpec attached by `@tool`, or None."""
    spec = getattr(obj, _SPEC_ATTR, None)
    return spec if isinstance(spec, ToolSpec) else None
