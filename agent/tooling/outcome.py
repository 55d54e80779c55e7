"""What one tool call came to, as text: a result, or an error message, plus what the tool printed.

`call_tool` runs the function and turns its return value or exception into an Outcome. It is the
same code whether the call runs in a worker process (`agent.tooling.worker`, in the child) or in
the agent's own process (`agent.tooling.inprocess`), so both give the same messages. Only text
crosses back from a worker: nothing of the tool's own objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.safe_text import valid_text
from agent.tooling.spec import ToolFailure

# What a tool prints is kept up to this many characters (the record is stored with the turn).
OUTPUT_LIMIT = 8000
OUTPUT_CUT = "\n...[output cut]"


@dataclass
class Outcome:
    """One call's result or error (never both) and what it printed.

    `cacheable`: the same arguments would end the same way (a result, a ToolFailure, a timeout), so
    a pure call's outcome may be reused within the turn; an unexpected exception may not.
    """

    result: str | None = None
    error: str | None = None
    output: str = ""
    cacheable: bool = True


def result_text(value: Any) -> str:
    """A tool's return value as text: str as is, None as "done", lists/dicts as JSON, else str()."""
    if isinstance(value, str):
        return value
    if value is None:
        return "done"
    if isinstance(value, (list, dict, tuple)):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def describe(exc: BaseException) -> str:
    """`Type: message` (or the type alone) for an unexpected exception; never raises."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails still gets its type named
        message = ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def call_tool(name: str, func: Callable[..., Any], kwargs: dict[str, Any], cap: int) -> Outcome:
    """Run the tool once; its value or exception as an Outcome, each text cut to `cap` characters.

    ToolFailure is the tool's own message (cacheable: the same arguments fail the same way); any
    other exception, sys.exit included, is an error island naming it and is not cached.
    """
    try:
        text = result_text(func(**kwargs))
    except ToolFailure as exc:
        return Outcome(error=(str(exc) or type(exc).__name__)[:cap])
    except SystemExit as exc:
        return Outcome(error=f"{name} called sys.exit({exc.code!r}) instead of returning a result", cacheable=False)
    except BaseException as exc:  # noqa: BLE001 - any failure of a tool is shown as an error island
        return Outcome(error=describe(exc)[:cap], cacheable=False)
    return Outcome(result=text[:cap])


def cut_output(text: str) -> str:
    """Printed output kept in the record: valid text, at most OUTPUT_LIMIT characters."""
    text = valid_text(text)
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + OUTPUT_CUT
