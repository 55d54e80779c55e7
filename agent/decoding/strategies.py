"""The strategies as one family: the `Strategy` protocol and the one registry, keyed by agent.config.STRATEGIES.

Every strategy takes a prompt and returns a SearchResult whose candidates are ranked best first by
the one shared score (agent.decoding.scoring). Two attributes tell the turn how to drive one:
`streams_tokens` (text goes to on_token as it is decoded) and `explores_branches` (several branches:
side-effect calls wait until one is chosen). Every strategy runs its prompt on top of the session's
PrefixCache (the KV of the last turn) and leaves its prompt's KV there for the next turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agent.config import STRATEGIES, DecodeConfig
from agent.decoding.beam import beam_search
from agent.decoding.best_of_n import best_of_n
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.mcmc import mcmc_search
from agent.decoding.progress import ProgressSink
from agent.decoding.results import SearchResult
from agent.decoding.single import SinglePass
from agent.decoding.tree import tree_search
from agent.decoding.tree_grad import tree_then_refine
from agent.model.backend import ModelBackend


class Strategy(Protocol):
    name: str
    streams_tokens: bool  # pieces of text go to on_token as they are decoded
    explores_branches: bool  # several branches: side-effect calls are deferred to the chosen one

    def run(self, lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig, *,
            make_constraint: Callable[[], ResponseConstraint | None] | None = None,
            should_stop: Callable[[], bool] | None = None, on_token: Callable[[str], None] | None = None,
            prefix_cache: PrefixCache | None = None, on_progress: ProgressSink | None = None) -> SearchResult:
        """Search for responses to prompt_ids; the best candidate comes first. A strategy that streams
        sends text to on_token; one that explores branches reports its state to on_progress."""


class Search(Protocol):
    """A strategy that explores branches: what beam, best-of-n, tree, tree+grad and mcmc implement."""

    def __call__(self, lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig, *,
                 make_constraint: Callable[[], ResponseConstraint | None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_progress: ProgressSink | None = None,
                 prefix_cache: PrefixCache | None = None) -> SearchResult: ...


class BranchingSearch:
    """A strategy over several branches: no streaming (the answer comes at the end), side effects deferred."""

    streams_tokens = False
    explores_branches = True

    def __init__(self, name: str, search: Search) -> None:
        self.name = name
        self.search = search

    def run(self, lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig, *,
            make_constraint: Callable[[], ResponseConstraint | None] | None = None,
            should_stop: Callable[[], bool] | None = None, on_token: Callable[[str], None] | None = None,
            prefix_cache: PrefixCache | None = None, on_progress: ProgressSink | None = None) -> SearchResult:
        return self.search(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop,
                           on_progress=on_progress, prefix_cache=prefix_cache)


STRATEGY_REGISTRY: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (SinglePass("greedy"), SinglePass("sample"), BranchingSearch("beam", beam_search),
                     BranchingSearch("best-of-n", best_of_n), BranchingSearch("tree", tree_search),
                     BranchingSearch("tree+grad", tree_then_refine), BranchingSearch("mcmc", mcmc_search))
}
# The registry is keyed by the one list of names the CLI and DecodeConfig know.
assert tuple(STRATEGY_REGISTRY) == STRATEGIES, "agent.config.STRATEGIES and the strategy registry disagree"


def strategy_for(name: str) -> Strategy:
    """The registered strategy of that name (a clear error naming the known ones otherwise)."""
    if name not in STRATEGY_REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGY_REGISTRY[name]
