"""The llguidance grammar of ONE segment of a native response: free text, or free text then one call.

A segment ends where a call closes (the constraint then forces the island and starts the next
segment with a fresh matcher), so nothing the model writes can run into an island. The call's
JSON is one `%json` alternative per tool: the name is a `const` and the arguments match that
tool's schema exactly (types, enums, required keys, no others), so name and arguments agree.
Separators are fixed to `", "` and `": "` as the templates' `tojson` writes them. Free text
never contains the opener's text, so a response reads back unambiguously (`NativeFormat.segments`).
"""

from __future__ import annotations

import json
from typing import Any

from agent.grammar.native.format import NativeFormat
from agent.grammar.values import minimal_value
from agent.tooling.json_schema import parameters_schema
from agent.tooling.spec import ToolSpec

# How llguidance writes the JSON of a call: no free whitespace, the separators `tojson` uses.
JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_REGEX_META = set("\\.+*?()|[]{}^$#&-~/")

MODES = ("auto", "required", "none")  # free text or a call; a call first; free text only


def regex_escape(text: str) -> str:
    """`text` as a literal inside an llguidance `/.../` regex (Rust syntax, `/` delimited)."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in text)


def call_schema(spec: ToolSpec, args_key: str) -> dict[str, Any]:
    """The JSON Schema of one call of `spec`: its name as a constant, its arguments exactly."""
    return {"type": "object",
            "properties": {"name": {"const": spec.name}, args_key: parameters_schema(spec, strict=True)},
            "required": ["name", args_key], "additionalProperties": False, "x-guidance": JSON_STYLE}


def segment_grammar(fmt: NativeFormat, specs: list[ToolSpec], mode: str) -> str:
    """Lark text (llguidance) for one segment. mode: auto | required | none (see MODES)."""
    if mode not in MODES:
        raise ValueError(f"unknown segment mode {mode!r}")
    spec = fmt.spec
    opener = regex_escape(spec.opener)
    text = f"/(?s:.+)/ & ~/(?s:.*){opener}(?s:.*)/"
    if spec.free_text_start():
        text += f" & /{spec.free_text_start()}(?s:.*)/"
    lines = ["%llguidance {}", f"TEXT: {text}"]
    if mode == "none" or not specs:
        return "\n".join(["%llguidance {}", "start: TEXT?", f"TEXT: {text}"]) + "\n"
    alts = []
    for i, tool in enumerate(specs):
        lines.append(f"tool_{i}: %json {json.dumps(call_schema(tool, spec.args_key))}")
        alts.append(f"tool_{i}")
    rest = spec.call_rest(fmt.literal, " | ".join(alts))
    open_lit = fmt.literal(spec.opener)
    if not spec.after_text:  # the call is a whole message, its opener optional
        lines.append(f"call: {open_lit}? {rest}")
        start = "call" if mode == "required" else "TEXT? | call"
    elif mode == "required":
        start = f"{open_lit} {rest}"
    elif fmt.opener_is_token():  # free text cannot hold a special token: no lazy lexeme needed
        start = f"TEXT? | TEXT? {open_lit} {rest}"
    else:  # a lazy lexeme ends the free text at the first opener
        lines.append(f"head[lazy]: /(?s:.*){opener}/")
        start = f"TEXT? | head {rest}"
    lines.insert(1, f"start: {start}")
    return "\n".join(lines) + "\n"


def call_reserve(fmt: NativeFormat, spec: ToolSpec) -> int:
    """An upper bound on the tokens the shortest call of `spec` takes (a token is at least one byte)."""
    args = {p.name: minimal_value(p.type) for p in spec.params if p.required}
    body = json.dumps({"name": spec.name, fmt.spec.args_key: args}, ensure_ascii=False)
    return len(fmt.spec.opener) + len(fmt.spec.call_end) + len(body.encode()) + 4
