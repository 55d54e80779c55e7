"""Valid UTF-8 at the store boundary: the one sanitizer for every string that crosses into SQLite.

Python strings may hold lone surrogates (`"\\ud800"`: a grammar-allowed call argument, a tool's
result, a command-line argument decoded with surrogateescape) that UTF-8 cannot encode: SQLite's
driver raises on them and the whole turn was lost. They are stored as U+FFFD (the replacement
character); every other character, surrogate pairs joined into one, is stored exactly. Reads go
through the same function (JSON may hold `\\ud800` escapes written by other tools), and bytes that
are not UTF-8 in a TEXT column (written by another SQLite client) read as U+FFFD too.
"""

from __future__ import annotations

from typing import Any

from agent.safe_text import valid_text


def text_column(value: Any) -> Any:
    """A TEXT column's value: a string made valid; None and other values as they are (SQLite binds
    numbers itself, and an object it cannot bind still fails the write loudly)."""
    return valid_text(value) if isinstance(value, str) else value


def decode_column(data: bytes) -> str:
    """sqlite3's text_factory: a TEXT value that is not valid UTF-8 reads with U+FFFD, never raises."""
    return data.decode("utf-8", "replace")
