"""Models' own tool-call formats (Hermes/Qwen, Llama 3, Mistral) as grammar-constrained calls.

`format` (what a format provides; NativeFormat: a format bound to a tokenizer: islands, call
parsing, segments), `hermes` / `llama3` / `mistral` (one format each), `template` (the island read
from the chat template), `resolve` (choosing a format), `grammar` (the grammar of one segment),
`constraint` (NativeConstraint), `factory` (make_native_constraint), `prompt` (the system text).
"""

from __future__ import annotations

from agent.grammar.native.constraint import NativeConstraint
from agent.grammar.native.factory import make_native_constraint
from agent.grammar.native.format import NativeCallError, NativeFormat
from agent.grammar.native.prompt import native_system_prompt
from agent.grammar.native.resolve import FORMATS, PROTOCOL, detect_tool_format, native_format, resolve_tool_format

__all__ = ["FORMATS", "PROTOCOL", "NativeCallError", "NativeConstraint", "NativeFormat", "detect_tool_format",
           "make_native_constraint", "native_format", "native_system_prompt", "resolve_tool_format"]
