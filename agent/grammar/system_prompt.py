"""The system prompt: explains the tool-call protocol and lists the registered tools.

The shipped demo model is trained on exactly this text, so change it only together with a
retrained model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from agent.grammar.protocol import format_call
from agent.grammar.values import example_value
from agent.tooling.spec import Param, ToolSpec


class DescribedTool(Protocol):
    name: str
    call_signature: str  # e.g. 'SEARCH(query: str)' or 'CALL(calc, expr: str)'
    description: str  # one line
    pure: bool


PROTOCOL_TEXT = (
    "You are a helpful assistant in a terminal. You can use tools by writing a call in your answer. "
    "The result appears on the next line after \"=>\". Use the result to answer. "
    "If the result does not say, answer that you don't know."
)


def build_system_prompt(tools: Iterable[DescribedTool], extra: str | None = None,
                        examples: list[str] | None = None) -> str:
    """Protocol explanation, then one line per tool: its call form and description; then the worked
    examples when given (see worked_examples)."""
    lines = [PROTOCOL_TEXT, "Tools:"]
    for tool in tools:
        note = "" if tool.pure else " (has side effects; asks first)"
        lines.append(f"{tool.call_signature} - {tool.description}{note}")
    if examples:
        lines.append(EXAMPLE_INTRO)
        lines.extend(examples)
    if extra:
        lines.append(extra)
    return "\n".join(lines)


# For a model never trained on the protocol (anything but the demo model): one worked example per
# tool kind, so the model sees a whole exchange (call, island, answer) rather than only signatures.
EXAMPLE_INTRO = "Write a call on its own, then wait for its result. Examples:"
# A response that writes this has started another example (base models continue the pattern): it ends there.
EXAMPLE_STOP = "\nQuestion: "
_KNOWN_EXAMPLES: dict[str, tuple[dict[str, Any], str, str, str]] = {
    # tool name -> (arguments, question, result, answer)
    "search": ({"query": "capital of France"}, "What is the capital of France?",
               "[3] France: The capital of France is Paris.", "The capital of France is Paris."),
    "load": ({"id": 3}, "Show me document 3.", "France: The capital of France is Paris.",
             "Document 3 says the capital of France is Paris."),
    "calc": ({"expr": "12 * 7"}, "What is 12 * 7?", "84", "12 * 7 = 84."),
    "note": ({"text": "buy milk"}, "Note that I must buy milk.", "noted", "I noted that you must buy milk."),
}


def _example_value(param: Param) -> Any:
    return example_value(param.type)


def worked_examples(specs: Iterable[ToolSpec]) -> list[str]:
    """One example exchange per tool: the question, the call as the model writes it, the shell's
    result line, and the answer that uses it."""
    lines = []
    for spec in specs:
        known = _KNOWN_EXAMPLES.get(spec.name)
        if known is not None and set(known[0]) == {p.name for p in spec.params}:
            args, question, result, answer = known
        else:
            args = {p.name: _example_value(p) for p in spec.params if p.required}
            question, result, answer = f"(a question {spec.name} helps with)", f"(what {spec.name} returns)", \
                "(the answer, using the result)"
        lines.append(f"Question: {question}\nAnswer: {format_call(spec, args)}\n=> {result}\n{answer}")
    return lines
