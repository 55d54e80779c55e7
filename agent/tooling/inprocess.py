"""Runs one tool call in the agent's own process: for tools that opt in (`@tool(in_process=True)`)
and where worker processes are not available (no `os.fork`, i.e. Windows).

The call runs in a daemon thread so that the caller still gets a timeout error on time when the
tool releases the GIL (sleeping, waiting on I/O). But a thread cannot be stopped: a timed-out
in-process tool keeps running and may still finish its work (a side effect included) later, and a
tool that keeps the GIL delays the timeout itself. Tools that need to be stoppable run in worker
processes (`agent.tooling.worker`), the default.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from typing import Any

from agent.tooling.outcome import Outcome, call_tool, cut_output


def run_in_process(name: str, func: Callable[..., Any], kwargs: dict[str, Any], timeout: float,
                   cap: int) -> Outcome:
    """Run `func(**kwargs)` in a thread of this process; a timeout error if it has not ended after `timeout` s.

    What the tool prints through sys.stdout/sys.stderr while the caller waits is captured into the
    outcome (those are process-wide, so anything another thread prints meanwhile is captured too);
    output written straight to the file descriptors, or after a timeout, is not.
    """
    done: list[Outcome] = []
    printed = io.StringIO()

    def target() -> None:
        done.append(call_tool(name, func, kwargs, cap))

    thread = threading.Thread(target=target, name=f"tool-{name}", daemon=True)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = printed
    try:
        thread.start()
        thread.join(timeout)
    finally:
        sys.stdout, sys.stderr = saved
    output = cut_output(printed.getvalue())
    if not done:  # still running: abandoned, as a thread cannot be killed
        return Outcome(error=f"{name} timed out after {timeout:g} s", output=output)
    outcome = done[0]
    outcome.output = output
    return outcome
