"""The island of a native format, read from the model's own chat template.

The template is asked to render a conversation that ends with an assistant call of a probe tool
and a tool message whose content is a sentinel, with the generation prompt. The island is what
it writes between the end of the call and the end of the text, the sentinel standing for the
result. A template that JSON-encodes tool results (Llama 3.1 writes `"..."`) is recognised by a
sentinel that JSON must escape. A template that cannot render this (it raises, or drops the tool
message) gives None, and the format's published form is used instead.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agent.grammar.native.format import FormatSpec, IslandForm

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PROBE_TOOL = "probe_tool"
PROBE_VALUE = "probe value 5f1c"  # written only in the probe call's arguments
PROBE_ID = "a1b2c3d4e"  # Mistral's templates demand 9 alphanumeric characters
# A quote and a backslash: a template that JSON-encodes the result writes them escaped.
SENTINEL = 'result 5f1c "\\ sentinel'


def _probe_messages() -> list[dict[str, Any]]:
    call = {"id": PROBE_ID, "type": "function",
            "function": {"name": PROBE_TOOL, "arguments": {"text": PROBE_VALUE}}}
    return [{"role": "user", "content": "probe question"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": PROBE_ID, "name": PROBE_TOOL, "content": SENTINEL}]


def _probe_tools() -> list[dict[str, Any]]:
    parameters = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    return [{"type": "function", "function": {"name": PROBE_TOOL, "description": "A probe.", "parameters": parameters}}]


def derive_island(spec: FormatSpec, tokenizer: PreTrainedTokenizerBase) -> IslandForm | None:
    """The island as the tokenizer's chat template writes it for this format, or None."""
    if not tokenizer.chat_template:
        return None
    try:
        rendered = tokenizer.apply_chat_template(_probe_messages(), tools=_probe_tools(), tokenize=False,
                                                 add_generation_prompt=True)
    except Exception:  # jinja errors and templates' own raise_exception: the template cannot say
        return None
    if not isinstance(rendered, str):
        return None
    encoded = json.dumps(SENTINEL, ensure_ascii=False)
    at, length, json_mode = rendered.find(encoded), len(encoded), True
    if at < 0:
        at, length, json_mode = rendered.find(SENTINEL), len(SENTINEL), False
    probe = rendered.find(PROBE_VALUE)
    if at < 0 or probe < 0 or probe > at:
        return None
    end = rendered.find(spec.call_end, probe)
    if end < 0 or end + len(spec.call_end) > at:
        return None
    end += len(spec.call_end)
    return IslandForm(prefix=rendered[end:at], suffix=rendered[at + length:],
                      json_content=json_mode or spec.json_content, derived=True)


def published_island(spec: FormatSpec, tokenizer: PreTrainedTokenizerBase) -> IslandForm:
    """The format's own published result form (when the template cannot render one)."""
    prefix, suffix = spec.published_island(tokenizer.eos_token or "")
    return IslandForm(prefix=prefix, suffix=suffix, json_content=spec.published_json, derived=False)


def island_form(spec: FormatSpec, tokenizer: PreTrainedTokenizerBase) -> IslandForm:
    """From the template when it can render a tool result, else the published form."""
    return derive_island(spec, tokenizer) or published_island(spec, tokenizer)


def template_shows_tools(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Does the chat template render the `tools` it is given? Many chat-tuned models were trained on
    tool calls but ship a template without them (SmolLM2: ChatML that ignores `tools`); then the
    system prompt must list the tools (agent.grammar.native.prompt)."""
    if not tokenizer.chat_template:
        return False
    messages = [{"role": "user", "content": "probe question"}]
    try:
        with_tools = tokenizer.apply_chat_template(messages, tools=_probe_tools(), tokenize=False)
        without = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # jinja errors and templates' own raise_exception: it cannot show them
        return False
    return with_tools != without
