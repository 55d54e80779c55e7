"""What one turn produced (TurnResult, what `agent run --json` prints) and a turn the store has not
wholly taken yet (UnsavedTurn)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.decoding.results import SearchResult, empty_refinement
from agent.sessions.records import AnswerRecord
from agent.tooling.records import ToolCallRecord


@dataclass
class TurnResult:
    """What one turn produced; `to_json()` is what `agent run --json` prints."""

    response: str
    tool_calls: list[ToolCallRecord]
    finish_reason: str
    new_tokens: int
    seconds: float
    forward_passes: int
    backward_passes: int = 0
    score: float | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    refinement: dict[str, Any] = field(default_factory=empty_refinement)
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0  # prompt tokens taken from the previous turn's KV cache
    island_tokens: int = 0  # tokens of the response that tool results wrote (not the model)
    grammar_hash: str | None = None  # the grammar the token masks came from (None: free text)
    turn: int = 0
    session_id: str | None = None
    search: SearchResult | None = None  # what a branch-exploring strategy found (for /alts and /tree)
    # why this turn is not saved yet (the store could not be written); None when saved or not saving
    unsaved: str | None = None
    # one line saying how the history was trimmed to fit the model's context; None when it was not
    context_notice: str | None = None
    context_limit: int | None = None  # the model's context length (None: unknown)
    # the tool a required call was routed to, with each tool's scores (agent.decoding.tool_router); None: not routed
    tool_route: dict[str, Any] | None = None

    @property
    def context_used(self) -> int:
        """Positions this turn filled: its prompt and its answer."""
        return self.prompt_tokens + self.new_tokens

    @property
    def interrupted(self) -> bool:
        return self.finish_reason == "interrupted"


@dataclass(eq=False)
class UnsavedTurn:
    """A turn the store has not (wholly) taken yet: its question, then its answer once decoded."""

    question: str
    turn: int | None = None  # drawn when the question was saved
    answer: AnswerRecord | None = None  # None while the turn is being decoded

    def describe(self) -> str:
        short = self.question if len(self.question) <= 50 else self.question[:47] + "..."
        what = "its answer" if self.turn is not None else "its question and answer"
        return f"{'turn ' + str(self.turn) if self.turn is not None else 'a turn'} ({short!r}): {what}"
