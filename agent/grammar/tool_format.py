"""Which form a session's tool calls take, and what follows from it: the system prompt, the tools the
chat template shows, and the constraint of each response.

`protocol` is our own `SEARCH(...)` / `CALL(...)` form, explained in the system prompt
(agent.grammar.system_prompt); a native format (agent.grammar.native: hermes, llama3, mistral) is the
model's own trained syntax, with the tools shown through its chat template's `tools` argument.
Both run through the same registry, tool runner, islands, search and store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.grammar.constraint import make_constraint
from agent.grammar.native import (
    FORMATS,
    PROTOCOL,
    make_native_constraint,
    native_format,
    native_system_prompt,
    resolve_tool_format,
)
from agent.grammar.native.prompt import tool_listing
from agent.grammar.native.template import template_shows_tools
from agent.grammar.protocol import call_opening
from agent.grammar.system_prompt import build_system_prompt, worked_examples
from agent.tooling.json_schema import tool_schemas

if TYPE_CHECKING:
    from agent.decoding.constraint import ResponseConstraint
    from agent.grammar.native.format import IslandForm
    from agent.model.runtime import LoadedModel
    from agent.tooling.registry import ToolRegistry
    from agent.tooling.runner import Confirm
    from agent.tooling.spec import ToolSpec


@dataclass(frozen=True)
class ToolFormat:
    """The resolved tool-call form of a session."""

    name: str  # "protocol" or a native format's name
    tools: list[dict[str, Any]] | None  # the JSON schemas the chat template shows (native); None for the protocol
    # The JSON schemas the system prompt lists: a native format whose chat template ignores `tools`.
    listed_tools: list[dict[str, Any]] | None = None

    @property
    def native(self) -> bool:
        return self.name != PROTOCOL


def resolve(lm: LoadedModel, registry: ToolRegistry | None, requested: str) -> ToolFormat:
    """The form for these tools: `requested` (auto: from the chat template). Without tools nothing is
    called, and the protocol's free text is what is left. ValueError for a native format the tokenizer
    cannot take (no chat template)."""
    if registry is None:
        return ToolFormat(PROTOCOL, None)
    name = resolve_tool_format(lm.tokenizer, requested)
    if name == PROTOCOL:
        return ToolFormat(PROTOCOL, None)
    if template_shows_tools(lm.tokenizer):
        return ToolFormat(name, tool_schemas(registry))
    return ToolFormat(name, None, listed_tools=tool_schemas(registry))


def system_prompt(fmt: ToolFormat, registry: ToolRegistry | None, examples: bool, extra: str | None = None) -> str:
    """The default system prompt: none without tools; a short neutral text for a native format (the
    template shows the tools); the protocol and its tools otherwise, with a worked example per tool when
    `examples` (a model not trained on the protocol). `extra` (the user's `--system` text) comes last on
    its own line, after the tool instructions it must not replace; without tools it is the whole prompt."""
    if registry is None:
        return extra or ""
    if fmt.native:
        listing = tool_listing(fmt.listed_tools, FORMATS[fmt.name].call_form) if fmt.listed_tools else None
        return native_system_prompt(extra, listing)
    specs = list(registry)
    return build_system_prompt(specs, extra=extra, examples=worked_examples(specs) if examples else None)


def response_constraint(lm: LoadedModel, fmt: ToolFormat, registry: ToolRegistry | None, user_grammar: str | None,
                        *, confirm: Confirm | None, defer_side_effects: bool, max_calls: int,
                        tool_choice: str) -> ResponseConstraint | None:
    """A fresh constraint for one response (None: free text, no tools and no grammar)."""
    if registry is None and user_grammar is None:
        return None
    if fmt.native and user_grammar is None:
        return make_native_constraint(lm, registry, fmt.name, tool_choice=tool_choice, confirm=confirm,
                                      defer_side_effects=defer_side_effects, max_calls=max_calls)
    return make_constraint(lm, registry, user_grammar, confirm=confirm, defer_side_effects=defer_side_effects,
                           max_calls=max_calls, tool_choice=tool_choice)


def call_openings(fmt: ToolFormat, specs: Iterable[ToolSpec]) -> dict[str, tuple[str, int]]:
    """Each tool's call as a response starts it, and where its arguments begin (the tool router scores the
    text before that): the protocol's `CALL(calc, expr="text")` up to `text`; a native format's call form
    up to the quoted name (`<tool_call>\\n{"name": "calc"`)."""
    if not fmt.native:
        return {spec.name: call_opening(spec) for spec in specs}
    head = FORMATS[fmt.name].call_form.split("<tool name>")[0]
    return {spec.name: (head + json.dumps(spec.name) + ", ", len(head + json.dumps(spec.name))) for spec in specs}


def island_form(lm: LoadedModel, fmt: ToolFormat) -> IslandForm | None:
    """How a native format's chat template writes a tool result (prefix + content + suffix), for the
    terminal's view of a streamed answer; None for the protocol (its island is already one line)."""
    return native_format(lm.tokenizer, fmt.name).island if fmt.native else None
