"""The system prompt: explains the tool-call protocol and lists the registered tools.

The shipped demo model is trained on exactly this text, so change it only together with a
retrained model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from agent.grammar.protocol import format_call
from agent.grammar.values import example_value
from agent.tooling.spec import ToolSpec


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


# For tools without a known example: exchanges with invented tools (not callable) that show values taken
# from the question. A per-tool example needs values, and a small model copies them into its own calls
# (BFCL: 149 of 400 calls wrote the placeholder "text", 55 of 81 wrong numbers the placeholder 1).
_DEMONSTRATIONS: tuple[tuple[str, str, str, str], ...] = (
    # (tool name, question, call, result + answer)
    ("convert_currency", "How much is 250 euros in Japanese yen?",
     'CALL(convert_currency, amount=250, from_currency="EUR", to_currency="JPY")',
     "=> 40250.0\n250 euros are 40250 yen."),
    ("find_flights", "Find flights from Boston to Denver on 2024-05-03.",
     'CALL(find_flights, origin="Boston", destination="Denver", date="2024-05-03")',
     "=> UA 512 at 08:10, DL 301 at 13:45\nThere are two flights: UA 512 at 08:10 and DL 301 at 13:45."),
)


def _shows_structure(spec: ToolSpec) -> bool:
    """Does the tool take objects or lists, whose syntax an example is needed to show?"""
    return any(p.type.kind in ("object", "list") for p in spec.params)


def worked_examples(specs: Iterable[ToolSpec]) -> list[str]:
    """Example exchanges: the question, the call as the model writes it, the shell's result line, and
    the answer that uses it. A tool with a known example gets it; the others share the demonstrations
    (their values come from the question), plus a format example where objects or lists are involved."""
    lines = []
    specs = list(specs)
    unknown = False
    for spec in specs:
        known = _KNOWN_EXAMPLES.get(spec.name)
        if known is not None and set(known[0]) == {p.name for p in spec.params}:
            args, question, result, answer = known
            lines.append(f"Question: {question}\nAnswer: {format_call(spec, args)}\n=> {result}\n{answer}")
            continue
        unknown = True
        if _shows_structure(spec):
            args = {p.name: example_value(p.type) for p in spec.params if p.required}
            lines.append(f"Question: (a question {spec.name} helps with)\nAnswer: {format_call(spec, args)}\n"
                         f"=> (what {spec.name} returns)\n(the answer, using the result)")
    if unknown:
        names = {spec.name for spec in specs}
        lines[:0] = [f"Question: {question}\nAnswer: {call}\n{rest}"
                     for name, question, call, rest in _DEMONSTRATIONS if name not in names]
    return lines
