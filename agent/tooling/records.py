"""Records of tool calls: ToolCallRecord (one executed, refused or pending call, as the store and
`--json` see it) and PendingCall (a side-effect call waiting for its search branch to be chosen)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ToolCallRecord:
    """One executed (or refused) tool call, as shown in `--json` and stored in the session.

    `island_text` is what the response shows after the call: written by the ToolRunner with
    `agent.grammar.protocol.format_island`, the one island formatter. `output` is what the tool
    printed (stdout and stderr together, cut at `agent.tooling.outcome.OUTPUT_LIMIT`): kept here,
    never written to the terminal, so it cannot mix with an answer or `--json` output.
    """

    tool: str
    args: dict[str, Any]
    result: str | None
    error: str | None
    seconds: float
    pure: bool = True
    speculative: bool = False
    call_text: str = ""
    island_text: str = ""
    output: str = ""
    refused: bool = False  # a side effect that was not run: nobody confirmed it, or the user said no

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "args": self.args,
            "result": self.result,
            "error": self.error,
            "seconds": round(self.seconds, 4),
            "pure": self.pure,
            "speculative": self.speculative,
            "output": self.output,
            "refused": self.refused,
        }


@dataclass
class PendingCall:
    """A side-effect call on a speculative branch, waiting for that branch to be chosen.

    `record` (result None until it runs) is the one the branch handed out; running the call fills
    it in place, so a caller holding it sees one call, not two.
    """

    tool: str
    args: dict[str, Any]
    call_text: str
    record: ToolCallRecord
