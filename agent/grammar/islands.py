"""Islands: how a tool's result is written into the response after its call (the protocol's form).

`\\n=> ` + the result on one line + `\\n`, cut at a limit. The shell writes it; the model never does.
"""

from __future__ import annotations

ISLAND_PREFIX = "\n=> "
ISLAND_SUFFIX = "\n"
TRUNCATION_MARKER = " ...[truncated]"
DEFAULT_RESULT_LIMIT = 1000


def one_line(text: str) -> str:
    """A result on one line: each newline becomes the two characters `\\n`."""
    return text.replace("\r\n", "\n").replace("\n", "\\n")


def island_content(result: str | None, error: str | None = None, limit: int = DEFAULT_RESULT_LIMIT) -> str:
    """What follows `=> `: the result (or `error: ...`) on one line, cut at `limit` characters."""
    body = f"error: {error}" if error is not None else (result or "")
    body = one_line(body)
    if len(body) > limit:
        body = body[:limit] + TRUNCATION_MARKER
    return body


def format_island(result: str | None, error: str | None = None, limit: int = DEFAULT_RESULT_LIMIT) -> str:
    """The hard island written after a call: `\\n=> ` + one-line result + `\\n`."""
    return ISLAND_PREFIX + island_content(result, error, limit) + ISLAND_SUFFIX
