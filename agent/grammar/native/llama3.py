"""Llama 3.1 / 3.2 JSON tool calls: the whole assistant message is the call,

    {"name": "calc", "parameters": {"expr": "1+2"}}

optionally after `<|python_tag|>`; the result comes back in the `ipython` role, as a JSON string:
`<|eot_id|><|start_header_id|>ipython<|end_header_id|>\\n\\n"3"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n`.
Free text must not start with `{` (it would look like a call).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.grammar.native.format import FormatSpec

PYTHON_TAG = "<|python_tag|>"


class Llama3(FormatSpec):
    name = "llama3"
    markers = (PYTHON_TAG, "ipython")
    opener = PYTHON_TAG
    args_key = "parameters"
    call_form = '{"name": <tool name>, "parameters": <arguments as a JSON object>}'
    call_end = "}}"  # the arguments object closes, then the call object
    after_text = False
    published_json = True

    def call_rest(self, lit: Callable[[str], str], tools: str) -> str:
        return f"({tools})"

    def free_text_start(self) -> str:
        return "[^{]"

    def call_start(self, segment: str) -> int:
        return 0 if segment.startswith(("{", PYTHON_TAG)) else -1

    def call_json(self, call_text: str) -> Any:
        body = call_text[len(PYTHON_TAG):] if call_text.startswith(PYTHON_TAG) else call_text
        return json.loads(body)

    def published_island(self, eos: str) -> tuple[str, str]:
        return ("<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n",
                "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
