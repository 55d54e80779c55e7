"""ToolCallRecord: one executed (or refused, or pending) tool call, as the store and `--json` see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ToolCallRecord:
    """One executed (or refused) tool call, as shown in `--json` and stored in the session."""

    tool: str
    args: dict[str, Any]
    result: str | None
    error: str | None
    seconds: float
    pure: bool = True
    speculative: bool = False
    call_text: str = ""
    island_text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "args": self.args,
            "result": self.result,
            "error": self.error,
            "seconds": round(self.seconds, 4),
            "pure": self.pure,
            "speculative": self.speculative,
        }
