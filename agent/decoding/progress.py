"""Where a search stands while it runs: the counters and the best answer so far, for a live status line.

The decoder renders nothing: a search hands `SearchProgress` values to the caller's `on_progress`
(the REPL and `agent run` draw them in place; agent.render_progress). Reports are throttled, since
the search asks whether to stop more often than a person can read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.decoding.decode import response_text

if TYPE_CHECKING:  # only for annotations: the token tree imports this module
    from agent.decoding.token_tree import Node, TokenTree

REPORT_EVERY_SECONDS = 0.1  # at most ten updates a second


@dataclass(frozen=True)
class SearchProgress:
    """One look at a running search."""

    strategy: str
    stage: str  # "searching" or, for tree+grad, "refining"
    forward_passes: int
    budget: int  # the forward-pass budget (config.search_budget)
    candidates: int  # complete responses found so far
    best_score: float | None  # the best complete response's mean log-probability per token (None: none yet)
    best_text: str  # the best complete response so far, else the branch grown last
    best_is_complete: bool
    seconds: float


ProgressSink = Callable[[SearchProgress], None]


class ProgressReporter:
    """Sends a token tree's state to `sink`, at most every REPORT_EVERY_SECONDS (and always the first time)."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.last = float("-inf")

    def report(self, tree: TokenTree) -> None:
        now = time.perf_counter()
        if now - self.last < REPORT_EVERY_SECONDS:
            return
        self.last = now
        complete = [node for node in tree.evaluated if node.status == "complete"]
        best: Node | None = max(complete, key=lambda node: node.mean) if complete else None
        shown = best if best is not None else (tree.evaluated[-1] if tree.evaluated else None)
        self.sink(SearchProgress(
            strategy=tree.config.strategy, stage="searching", forward_passes=tree.forward_passes,
            budget=tree.config.search_budget, candidates=len(complete),
            best_score=best.mean if best is not None else None,
            best_text=response_text(tree.lm.tokenizer, shown.response_ids()[0]) if shown is not None else "",
            best_is_complete=best is not None, seconds=now - tree.started,
        ))
