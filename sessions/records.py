"""What the store's reads return: typed dicts (plain dicts at run time, so JSON export is a dump),
and what a turn's answer writes (`AnswerRecord`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict


@dataclass
class AnswerRecord:
    """Everything a turn's answer writes, in one transaction (`SessionStore.finish_turn`): the
    assistant message and its record (see `SessionStore.record_turn` for the shapes)."""

    text: str
    interrupted: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    token_counts: dict[str, Any] = field(default_factory=dict)
    # the explored token tree: {"best_node": id, "nodes": [{id, parent, tokens, text, mean, status, reason,
    # eos}, ...]} (None: the strategy explores no tree)
    search_tree: dict[str, Any] | None = None


class SessionRow(TypedDict):
    """A session as `SessionStore.get_session` returns it."""

    id: str
    created: str
    model_id: str
    weights_hash: str | None
    title: str | None


class SessionListing(SessionRow):
    """A row of `SessionStore.list_sessions`: the session, its title or first question, and counts."""

    updated: str
    turns: int
    messages: int


class StoredMessage(TypedDict):
    id: int
    turn: int
    role: str
    text: str
    created: str
    interrupted: bool
    undone: str | None  # when `/undo` or `/retry` took its turn back (kept, left out of the history)


class SearchHit(TypedDict):
    """A message matched by `SessionStore.search`, with its session's model and title."""

    session_id: str
    message_id: int
    turn: int
    role: str
    text: str
    created: str
    model_id: str
    title: str | None


class StoredToolCall(TypedDict):
    """A tool call as stored: `call_text` is the call as it appears in the response and
    `island_text` the `\\n=> ...\\n` island after it (None in rows written without them);
    `output` is what the tool printed (None when nothing, or in rows written before it was kept)."""

    tool: str
    args: dict[str, Any]
    result: str | None
    error: str | None
    seconds: float | None
    pure: bool
    speculative: bool
    chosen: bool
    call_text: str | None
    island_text: str | None
    output: str | None


class StoredCandidate(TypedDict):
    idx: int
    parent: int | None
    text: str
    score: float | None
    token_count: int | None
    strategy: str | None
    refined: bool
    score_before: float | None
    score_after: float | None
    grad_steps: int | None
    accepted: bool | None
    chosen: bool


class CandidateStats(TypedDict):
    """A turn's candidates in brief: how many, the best score, how many refined and accepted."""

    count: int
    best_score: float | None
    refined: int
    accepted: int



class TurnRecord(TypedDict):
    """One recorded turn (`SessionStore.turn_records`): decoding config, timings, calls, candidates."""

    turn: int
    created: str
    strategy: str | None
    seed: int | None
    budget: int | None
    temperature: float | None
    temperatures: list[float] | None
    grammar_hash: str | None
    config: dict[str, Any]
    timings: dict[str, Any]
    seconds: float | None
    token_counts: dict[str, Any]
    tool_calls: list[StoredToolCall]
    candidates: list[StoredCandidate]
    candidate_stats: CandidateStats


class TranscriptTurn(TypedDict):
    """A turn of `SessionStore.transcript`: its messages and records (turn 0 holds the system prompt)."""

    turn: int
    messages: list[StoredMessage]
    records: list[TurnRecord]


class StoredTreeNode(TypedDict):
    """A node of a stored search tree (`SessionStore.search_tree`); `parent` is None under the prompt."""

    id: int
    parent: int | None
    tokens: list[int]
    text: str
    mean: float | None
    status: str
    reason: str
    eos: bool
    call: dict[str, Any] | None  # the tool call this node made (tool, args, result, error, ...), on any branch


class StoredTree(TypedDict):
    turn: int
    best_node: int | None
    nodes: list[StoredTreeNode]
