"""The system prompt: explains the tool-call protocol and lists the registered tools.

The shipped demo model is trained on exactly this text, so change it only together with a
retrained model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


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


def build_system_prompt(tools: Iterable[DescribedTool], extra: str | None = None) -> str:
    """Protocol explanation, then one line per tool: its call form and description."""
    lines = [PROTOCOL_TEXT, "Tools:"]
    for tool in tools:
        note = "" if tool.pure else " (has side effects; asks first)"
        lines.append(f"{tool.call_signature} - {tool.description}{note}")
    if extra:
        lines.append(extra)
    return "\n".join(lines)
