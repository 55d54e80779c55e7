"""Deferred side-effect calls: the tool half of running a call a search branch paused at.

With defer_side_effects a branch that opens a side-effect call stops there (its constraint holds
a PendingCall) so that nothing runs on a branch the search may drop. Once the branch is chosen,
`run_deferred_call` runs it (after confirmation, inside the constraint's run_pending) and hands
back the island to force; agent.decoding.search then continues the response from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.tooling.records import ToolCallRecord

if TYPE_CHECKING:
    from agent.decoding.constraint import ResponseConstraint, Step


def run_deferred_call(constraint: ResponseConstraint,
                      tool_calls: list[ToolCallRecord]) -> tuple[Step, list[ToolCallRecord]]:
    """Run the constraint's pending call; return its island step and the branch's calls with it executed.

    The branch recorded the call when it paused (not run yet): the executed record replaces that one
    in `tool_calls` (a new list; the given one is left as it was).
    """
    pending = constraint.pending_call
    if pending is None:
        raise ValueError("no side-effect call is pending on this branch")
    step = constraint.run_pending()
    calls = [call for call in tool_calls if call is not pending.record and not _paused_copy(call, pending.call_text)]
    if step.tool_call is not None:
        calls.append(step.tool_call)
    return step, calls


def _paused_copy(call: ToolCallRecord, call_text: str) -> bool:
    """A record of the same call that never ran (neither result nor error): the paused one."""
    return call.result is None and call.error is None and bool(call.call_text) and call.call_text == call_text
