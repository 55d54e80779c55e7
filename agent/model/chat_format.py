"""Messages -> prompt text: the tokenizer's chat template when it has one, else a plain template.

The plain template (for base models without a chat template) is documented in the README:

    ### System
    <system prompt>

    ### User
    <message>

    ### Assistant
    <response>

and the generation prompt is the last `### Assistant` header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}

PLAIN_HEADERS = {"system": "### System", "user": "### User", "assistant": "### Assistant"}
PLAIN_STOP = "\n### User"
# Any header of the plain template at a line start ends the response: a base model runs on into the
# next turn with `### User`, and sometimes writes a new `### Assistant` or `### System` first.
PLAIN_STOPS = [PLAIN_STOP, "\n### Assistant", "\n### System"]


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(tokenizer.chat_template)


def render_plain(messages: list[Message], add_generation_prompt: bool = True) -> str:
    parts = [f"{PLAIN_HEADERS[m['role']]}\n{m['content']}\n\n" for m in messages]
    if add_generation_prompt:
        parts.append(f"{PLAIN_HEADERS['assistant']}\n")
    return "".join(parts)


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[Message],
                  add_generation_prompt: bool = True, tools: list[dict[str, Any]] | None = None) -> str:
    """The prompt text for messages, ending where the assistant's response begins.

    `tools` (JSON schemas, agent.tooling.json_schema.tool_schemas) go to the chat template, which
    shows them in the model's own trained form; the plain template has no place for them (the
    protocol's system prompt lists the tools instead).
    """
    for m in messages:
        if m["role"] not in PLAIN_HEADERS:
            raise ValueError(f"unknown message role {m['role']!r}")
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             tools=tools or None)
    return render_plain(messages, add_generation_prompt)


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, messages: list[Message],
                     tools: list[dict[str, Any]] | None = None) -> list[int]:
    """Token ids of the prompt; the template text already holds any BOS, so none is added again."""
    text = render_prompt(tokenizer, messages, tools=tools)
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not has_chat_template(tokenizer) and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def stop_strings_for(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Extra stop strings: a base model with the plain template must not write the user's next turn."""
    return [] if has_chat_template(tokenizer) else list(PLAIN_STOPS)
