"""make_native_constraint: a fresh NativeConstraint for one response, from the model, the tools,
the format and the tool choice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.grammar.finishing import FINISH_MARGIN, FinishSteering
from agent.grammar.native.constraint import FIRST, LATER, TEXT_ONLY, NativeConstraint, NativeSetup
from agent.grammar.native.grammar import call_reserve, segment_grammar
from agent.grammar.native.resolve import PROTOCOL, native_format, resolve_tool_format
from agent.grammar.tokenizer import TokenizerInfo, tokenizer_info
from agent.tooling.registry import ToolRegistry
from agent.tooling.runner import DEFAULT_RESULT_LIMIT, Confirm, ToolRunner

if TYPE_CHECKING:
    from agent.model.runtime import LoadedModel

TOOL_CHOICES = ("auto", "required", "none")
# The templates' JSON puts a space after `:` and `,`: the closing policy must be able to cross it
# (llguidance forces those bytes but no single token, as several tokens can spell them).
JSON_PIECES = [b' "', b" ", b" 0", b" [", b" f"]


def finishing_for(info: TokenizerInfo) -> FinishSteering:
    """The steering that closes an open call near the token limit, with the JSON pieces added."""
    return FinishSteering.for_tokenizer(info, protocol=False, extra=JSON_PIECES)


def make_native_constraint(lm: LoadedModel, registry: ToolRegistry | None, tool_format: str,
                           tool_choice: str = "auto", confirm: Confirm | None = None,
                           defer_side_effects: bool = False, result_limit: int = DEFAULT_RESULT_LIMIT,
                           max_calls: int = 0) -> NativeConstraint:
    """A fresh constraint for one response in a model's own tool-call format.

    tool_format: hermes | llama3 | mistral (or auto, resolved from the chat template; a template
    that resolves to our protocol is a ValueError: that is `agent.grammar.constraint.make_constraint`).
    tool_choice: auto (free text or calls), required (the response opens with a call), none (no
    call can be written), or a tool's name (the first call is that tool); after the first call the
    response goes on as `auto`. confirm / defer_side_effects / result_limit / max_calls: as for
    make_constraint (max_calls 0 = no limit; after that many calls no call can open).
    """
    name = resolve_tool_format(lm.tokenizer, tool_format)
    if name == PROTOCOL:
        raise ValueError("this chat template has no native tool-call format; use the protocol "
                         "(agent.grammar.constraint.make_constraint)")
    fmt = native_format(lm.tokenizer, name)
    registry = registry if registry is not None else ToolRegistry()
    specs = list(registry)
    first_specs, first_mode, later_mode = specs, tool_choice, tool_choice
    if tool_choice == "required":
        if not specs:
            raise ValueError("tool_choice 'required' needs at least one registered tool")
        later_mode = "auto"
    elif tool_choice not in TOOL_CHOICES:
        if tool_choice not in registry:
            raise ValueError(f"tool_choice {tool_choice!r} is not a registered tool; "
                             f"registered: {', '.join(registry.names()) or 'none'}")
        first_specs, first_mode, later_mode = [registry.get(tool_choice)], "required", "auto"
    grammars = {FIRST: segment_grammar(fmt, first_specs, first_mode),
                LATER: segment_grammar(fmt, specs, later_mode),
                TEXT_ONLY: segment_grammar(fmt, specs, "none")}
    info = tokenizer_info(lm.tokenizer, lm.vocab_size, lm.eos_token_ids)
    special_text = {int(i): text.encode("utf-8") for text, i in lm.tokenizer.get_added_vocab().items()}
    reserve = max((call_reserve(fmt, s) for s in specs), default=0) + FINISH_MARGIN + 2
    shared = NativeSetup(fmt=fmt, info=info, special_text=special_text, grammars=grammars, registry=registry,
                         runner=ToolRunner(registry, confirm=confirm, result_limit=result_limit),
                         defer_side_effects=defer_side_effects, first_is_call=first_mode == "required",
                         open_reserve=reserve, finishing=finishing_for(info),
                         max_calls=max_calls)
    return NativeConstraint(shared)
