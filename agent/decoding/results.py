"""What strategies return (a leaf module): DecodeResult (one pass of the decode loop), Candidate (one
complete response, exactly scored) and SearchResult (candidates ranked best first by `rank`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.tooling.records import ToolCallRecord

if TYPE_CHECKING:
    from agent.decoding.constraint import ResponseConstraint
    from agent.decoding.scoring import ScoreParts
    from agent.decoding.token_tree import Node


@dataclass
class DecodeResult:
    """One pass of the decode loop (agent.decoding.decode): the response and what it cost."""

    token_ids: list[int]  # the response: model tokens and islands, without the final EOS
    island_mask: list[bool]  # True where the token was forced (island), not sampled
    logprobs: list[float]  # the model's log p of each sampled token; 0.0 for islands
    text: str
    finish_reason: str  # "eos" | "stop" | "length" | "interrupted" | "grammar"
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    forward_passes: int = 0
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0
    seconds: float = 0.0
    eos_logprob: float | None = None  # log p of the end-of-sequence token when the model ended the response

    @property
    def new_tokens(self) -> int:
        """Tokens the model generated itself (islands excluded)."""
        return sum(1 for island in self.island_mask if not island)


@dataclass
class Candidate:
    """One complete response a strategy found, with its exact score and where it came from."""

    text: str
    token_ids: list[int]
    island_mask: list[bool]
    logprobs: list[float]  # log p of each token; 0.0 at islands
    score: float  # agent.decoding.scoring value: mean log-prob per model token, guards applied
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    strategy: str = ""
    parent: int | None = None  # index (in the result's candidates) of the candidate this was refined from
    refined: bool = False
    score_before: float | None = None
    score_after: float | None = None
    grad_steps: int = 0
    accepted: bool | None = None
    finish_reason: str = "length"  # "eos" | "grammar" | "stop" | "length" | "budget" | "interrupted" | "tool"
    eos_logprob: float | None = None  # log p(EOS) when the model ended the response
    empty: bool = False
    degenerate: bool = False
    node_id: int | None = None  # the tree node this candidate ends at (tree strategies)
    constraint: ResponseConstraint | None = None  # the branch's grammar state (to run a deferred side-effect call)

    @classmethod
    def scored(cls, text: str, token_ids: list[int], island_mask: list[bool], logprobs: list[float],
               parts: ScoreParts, *, strategy: str, finish_reason: str, eos_logprob: float | None = None,
               tool_calls: list[ToolCallRecord] | None = None, constraint: ResponseConstraint | None = None,
               node_id: int | None = None) -> Candidate:
        """A candidate with its shared score (`parts`, from agent.decoding.scoring.score_parts)."""
        return cls(text=text, token_ids=token_ids, island_mask=island_mask, logprobs=logprobs, score=parts.value,
                   tool_calls=list(tool_calls or []), strategy=strategy, finish_reason=finish_reason,
                   eos_logprob=eos_logprob, empty=parts.empty, degenerate=parts.degenerate, node_id=node_id,
                   constraint=constraint)

    @classmethod
    def from_decode(cls, decoded: DecodeResult, parts: ScoreParts, strategy: str,
                    constraint: ResponseConstraint | None = None) -> Candidate:
        """The one response of a pass of the decode loop, with its shared score `parts`."""
        return cls.scored(decoded.text, decoded.token_ids, decoded.island_mask, decoded.logprobs, parts,
                          strategy=strategy, finish_reason=decoded.finish_reason, eos_logprob=decoded.eos_logprob,
                          tool_calls=decoded.tool_calls, constraint=constraint)

    @property
    def new_tokens(self) -> int:
        return sum(1 for island in self.island_mask if not island)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record for `--json` and the session store."""
        return {
            "text": self.text,
            "score": round(self.score, 6),
            "token_count": self.new_tokens,
            "strategy": self.strategy,
            "parent": self.parent,
            "refined": self.refined,
            "score_before": None if self.score_before is None else round(self.score_before, 6),
            "score_after": None if self.score_after is None else round(self.score_after, 6),
            "grad_steps": self.grad_steps,
            "accepted": self.accepted,
            "finish_reason": self.finish_reason,
        }


def empty_refinement() -> dict[str, Any]:
    return {"tried": 0, "improved": 0, "mean_gain": 0.0}


@dataclass
class SearchResult:
    """What a strategy found: the best candidate, the others (best first) and what it cost."""

    best: Candidate
    candidates: list[Candidate]
    forward_passes: int = 0
    backward_passes: int = 0
    refinement: dict[str, Any] = field(default_factory=empty_refinement)
    tree: Node | None = None  # the token tree's root for /tree (tree-based strategies), or None
    kv_reuse_ratio: float = 1.0  # model token evaluations / tree nodes (1.0 = no prefix recomputed)
    seconds: float = 0.0
    strategy: str = ""
    token_evaluations: int = 0  # response tokens run through the model (batch rows included)
    kv_peak_bytes: int = 0  # the most the token tree held (KV, log-probs, masks): within config.kv_budget_bytes
    # The prompt, and how much of it the session's PrefixCache held (always 0 over a server: its KV is its own).
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0

    @property
    def text(self) -> str:
        return self.best.text

    @property
    def token_ids(self) -> list[int]:
        return self.best.token_ids

    @property
    def island_mask(self) -> list[bool]:
        return self.best.island_mask

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return self.best.tool_calls

    @property
    def finish_reason(self) -> str:
        return self.best.finish_reason

    @property
    def new_tokens(self) -> int:
        return self.best.new_tokens

    @property
    def score(self) -> float:
        return self.best.score


def mark_interrupted(result: SearchResult) -> SearchResult:
    """The result as it stands, every candidate marked as cut short by the user (Ctrl-C)."""
    for candidate in [result.best, *result.candidates]:
        candidate.finish_reason = "interrupted"
    return result


def rank(candidates: list[Candidate]) -> list[Candidate]:
    """Finished answers first, each group best first by the shared score; ties keep their order (stable).

    An answer the budget cut off ("budget": passes, time or Ctrl-C ran out first) is not an answer the
    model finished, however well its first tokens scored: it comes after every finished one.
    """
    return sorted(candidates, key=lambda c: (c.finish_reason == "budget", -c.score))
