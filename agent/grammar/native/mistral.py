"""Mistral v3 tool calls (Mistral 7B Instruct v0.3 and its kin): free text, then

    [TOOL_CALLS][{"name": "calc", "arguments": {"expr": "1+2"}}]

(one call per list here: each call gets its result at once), the result as
`</s>[TOOL_RESULTS] {"content": "3", ...}[/TOOL_RESULTS]` (the content a JSON string, as
mistral-common writes it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.grammar.native.format import FormatSpec

TOOL_CALLS = "[TOOL_CALLS]"


class Mistral(FormatSpec):
    name = "mistral"
    markers = (TOOL_CALLS,)
    opener = TOOL_CALLS
    args_key = "arguments"
    call_form = '[TOOL_CALLS][{"name": <tool name>, "arguments": <arguments as a JSON object>}]'
    call_end = "]"  # the list of calls closes
    json_content = True
    published_json = True

    def call_rest(self, lit: Callable[[str], str], tools: str) -> str:
        return f'" "? "[" ({tools}) "]"'  # the v3 template writes a space after the token; the model may not

    def call_json(self, call_text: str) -> Any:
        if not call_text.startswith(TOOL_CALLS):
            raise ValueError(f"a call starts with {TOOL_CALLS}")
        calls = json.loads(call_text[len(TOOL_CALLS):])
        if not isinstance(calls, list) or len(calls) != 1:
            raise ValueError("a call is a list of exactly one call")
        return calls[0]

    def published_island(self, eos: str) -> tuple[str, str]:
        return (f'{eos}[TOOL_RESULTS] {{"content": ', "}[/TOOL_RESULTS]")
