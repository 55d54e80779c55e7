"""Text that crosses a boundary: valid UTF-8 (into SQLite, an island) and safe for a terminal.

Python strings may hold lone surrogates ("\\ud800": a grammar-allowed call argument, a tool's
result, a command-line argument decoded with surrogateescape) that UTF-8 cannot encode, and text a
model, a tool or a document produced may hold escape sequences. `valid_text` is the one sanitiser
for the first (used by the store and the tool runner), `printable` the one for the second (used by
everything that writes to a terminal or a Markdown export); what is stored stays exact otherwise.
`pending_prefix` is what a stream must hold back so that a marker is never shown half-written.
"""

from __future__ import annotations

from typing import Any

# C0 controls (but tab and newline), DEL and C1 controls shown as harmless symbols, so text a model
# or a tool produced can never drive the terminal (escape sequences, carriage returns, bells); lone
# surrogates (a tool's "\\ud800", an argv byte that is not UTF-8) as U+FFFD, since no terminal
# encoding can write them
_CONTROLS = {c: 0x2400 + c for c in range(32) if c not in (9, 10)} | {0x7F: 0x2421} | {
    c: 0xFFFD for c in range(0x80, 0xA0)} | {c: 0xFFFD for c in range(0xD800, 0xE000)}


def valid_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD (and surrogate pairs joined); usually `text` itself."""
    if text.isascii():
        return text  # the common case, checked in C without copying
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # UTF-16 with surrogatepass pairs up "\ud83d\ude00" into one character; decoding with
        # "replace" turns what is left alone into U+FFFD
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def valid_value(value: Any) -> Any:
    """`value` with every string in it (dict keys, list items, nested) made valid; other values as they are."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_value(k): valid_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [valid_value(v) for v in value]
    return value


def printable(text: str) -> str:
    """`text` safe to write to a terminal: C0/C1 controls and DEL become visible symbols (␛, ␍, ␇ ...).

    The one sanitiser of terminal output; what is stored stays exact."""
    return text.translate(_CONTROLS)


def pending_prefix(text: str, marker: str) -> int:
    """How many characters at the end of `text` may be the start of `marker` (0 when none): a stream
    holds them back until the next piece says whether the marker follows."""
    return next((k for k in range(min(len(marker) - 1, len(text)), 0, -1) if text.endswith(marker[:k])), 0)
