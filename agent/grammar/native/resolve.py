"""Which tool-call format a model uses, and the format bound to its tokenizer.

`auto` reads the chat template: `<tool_call>` means Hermes/Qwen, `<|python_tag|>` or `ipython`
Llama 3, `[TOOL_CALLS]` Mistral; anything else (or no template) our own protocol.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from agent.grammar.native.format import FormatSpec, NativeFormat
from agent.grammar.native.hermes import Hermes
from agent.grammar.native.llama3 import Llama3
from agent.grammar.native.mistral import Mistral
from agent.grammar.native.template import island_form

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PROTOCOL = "protocol"
# In detection order: the first whose marker the template mentions wins.
FORMATS: dict[str, FormatSpec] = {spec.name: spec for spec in (Hermes(), Llama3(), Mistral())}

# tokenizer -> {(format name, chat template) -> NativeFormat}: the island is read from the template once.
_BOUND: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, dict[tuple[str, str], NativeFormat]] = (
    weakref.WeakKeyDictionary())


def detect_tool_format(chat_template: str | None) -> str:
    """The format a chat template was written for, or "protocol"."""
    if not chat_template:
        return PROTOCOL
    for name, spec in FORMATS.items():
        if any(marker in chat_template for marker in spec.markers):
            return name
    return PROTOCOL


def resolve_tool_format(tokenizer: PreTrainedTokenizerBase, requested: str) -> str:
    """"auto" -> the template's format (or "protocol"); "protocol" as is; a native format needs a
    chat template (it is what shows the model the tools and writes their results)."""
    if requested == "auto":
        return detect_tool_format(tokenizer.chat_template)
    if requested == PROTOCOL:
        return PROTOCOL
    if requested not in FORMATS:
        known = ", ".join(["auto", PROTOCOL, *FORMATS])
        raise ValueError(f"unknown tool format {requested!r}; choose one of {known}")
    if not tokenizer.chat_template:
        raise ValueError(f"tool format {requested!r} needs the model's chat template to show the tools and "
                         "their results, and this tokenizer has none; use --tool-format protocol")
    return requested


def native_format(tokenizer: PreTrainedTokenizerBase, name: str) -> NativeFormat:
    """The named native format bound to this tokenizer (cached with the tokenizer)."""
    if name not in FORMATS:
        raise ValueError(f"{name!r} is not a native tool format; known: {', '.join(FORMATS)}")
    per_tokenizer = _BOUND.setdefault(tokenizer, {})
    key = (name, tokenizer.chat_template or "")
    bound = per_tokenizer.get(key)
    if bound is None:
        spec = FORMATS[name]
        bound = per_tokenizer[key] = NativeFormat(spec, tokenizer, island_form(spec, tokenizer))
    return bound
