"""The system prompt with a native format. A chat template that shows the tools does so in the form
the model was trained on, so the prompt must not explain our protocol (`SEARCH(...)`, `=>`) as well;
a template that ignores them (SmolLM2's ChatML) gets them listed here, as JSON schemas between
`<tools>` tags, with the form of a call."""

from __future__ import annotations

import json
from typing import Any

NATIVE_SYSTEM_TEXT = ("You are a helpful assistant in a terminal. Use the tools when they help, "
                      "and answer from their results.")


def tool_listing(tools: list[dict[str, Any]], call_form: str) -> str:
    """The tools as JSON schemas, one a line, and how to call one."""
    schemas = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return (f"You have these tools, described as JSON schemas:\n<tools>\n{schemas}\n</tools>\n"
            f"To call a tool, write:\n{call_form}\nIts result comes after the call.")


def native_system_prompt(extra: str | None = None, listing: str | None = None) -> str:
    """A short neutral system text, the tool listing when the template does not show the tools, then
    `extra` (the user's own system text) if given."""
    return "\n".join(part for part in (NATIVE_SYSTEM_TEXT, listing, extra) if part)
