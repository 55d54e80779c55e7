"""The interface between the decoder and whatever constrains a response (grammar + tool islands).

The decoder (decode loop, token tree, strategies) and the turn know only this protocol;
`agent.grammar.constraint.GrammarConstraint` implements it with llguidance and the tool runner.
A strategy that explores several branches calls `fork()` to give each branch its own state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from agent.tooling.records import ToolCallRecord

if TYPE_CHECKING:
    from agent.tooling.records import PendingCall


@dataclass
class Step:
    """What the constraint says after accepting one sampled token."""

    # Tokens to force next, not sampled: a hard island (tool result) or grammar-forced text.
    forced_token_ids: list[int] = field(default_factory=list)
    # True when the forced tokens are a hard island (excluded from the model's score).
    forced_is_island: bool = True
    # The tool call that produced the island, if any.
    tool_call: ToolCallRecord | None = None


class ResponseConstraint(Protocol):
    def allowed_tokens(self) -> torch.Tensor | None:
        """Bool mask over the logits (len = model vocab width) of tokens allowed next; None = any."""

    def accept(self, token_id: int) -> Step:
        """Advance by one sampled token; may ask the decoder to force an island next."""

    def is_finished(self) -> bool:
        """True when the response is complete: only end-of-sequence may follow."""

    def fork(self) -> ResponseConstraint:
        """An independent copy for another branch of a search."""

    def set_tokens_left(self, n: int) -> None:
        """How many sampled tokens the decoder may still take (islands do not count)."""

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """Calls executed on this branch so far, in order."""

    @property
    def pending_call(self) -> PendingCall | None:
        """A side-effect call this branch stopped at (defer_side_effects), waiting to be chosen."""

    def run_pending(self) -> Step:
        """Run the pending call (agent.tooling.deferred calls this) and return its island to force."""

    @property
    def grammar_hash(self) -> str:
        """Identifies the grammar the masks come from (stored with the turn)."""
