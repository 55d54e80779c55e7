"""The system prompt with a native format: the chat template shows the tools in the form the model
was trained on, so the prompt must not explain our protocol (`SEARCH(...)`, `=>`) as well."""

from __future__ import annotations

NATIVE_SYSTEM_TEXT = ("You are a helpful assistant in a terminal. Use the tools when they help, "
                      "and answer from their results.")


def native_system_prompt(extra: str | None = None) -> str:
    """A short neutral system text, then `extra` (the user's own system text) if given."""
    return NATIVE_SYSTEM_TEXT if not extra else f"{NATIVE_SYSTEM_TEXT}\n{extra}"
