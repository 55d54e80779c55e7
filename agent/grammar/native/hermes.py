"""Hermes form (Hermes 2 Pro, Qwen2.5, Qwen3): free text, then

    <tool_call>
    {"name": "calc", "arguments": {"expr": "1+2"}}
    </tool_call>

and the result in a user turn inside `<tool_response>` (Qwen2.5:
`<|im_end|>\\n<|im_start|>user\\n<tool_response>\\n...\\n</tool_response><|im_end|>\\n<|im_start|>assistant\\n`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.grammar.native.format import FormatSpec

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


class Hermes(FormatSpec):
    name = "hermes"
    markers = (OPEN,)
    opener = OPEN
    args_key = "arguments"
    call_form = '<tool_call>\n{"name": <tool name>, "arguments": <arguments as a JSON object>}\n</tool_call>'
    call_end = CLOSE

    def call_rest(self, lit: Callable[[str], str], tools: str) -> str:
        return f'"\\n" ({tools}) "\\n" {lit(CLOSE)}'

    def call_json(self, call_text: str) -> Any:
        if not call_text.startswith(OPEN) or not call_text.endswith(CLOSE):
            raise ValueError(f"a call is {OPEN} ... {CLOSE}")
        return json.loads(call_text[len(OPEN):-len(CLOSE)])

    def published_island(self, eos: str) -> tuple[str, str]:
        return ("<|im_end|>\n<|im_start|>user\n<tool_response>\n",
                "\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
