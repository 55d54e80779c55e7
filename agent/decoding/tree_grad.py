"""Strategy `tree+grad`: the tree search (agent.decoding.tree), then gradient refinement of its best
candidates (agent.decoding.refine), within one time limit; the live status says which stage runs."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.limits import Deadline
from agent.decoding.progress import ProgressSink, SearchProgress
from agent.decoding.refine import refine_result
from agent.decoding.results import SearchResult, mark_interrupted
from agent.decoding.tree import tree_search
from agent.model.backend import GRADIENTS, ModelBackend, require_weights


def tree_then_refine(lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig, *,
                     make_constraint: Callable[[], ResponseConstraint | None] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     on_progress: ProgressSink | None = None,
                     prefix_cache: PrefixCache | None = None) -> SearchResult:
    """Strategy `tree+grad`: the tree search, then gradient refinement of its best candidates.

    A time limit (config.time_limit) covers both: refinement stops where the time is up, with what it has.
    """
    require_weights(lm, "tree+grad", GRADIENTS)
    deadline, started = Deadline(config.time_limit), time.perf_counter()
    result = tree_search(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop,
                         on_progress=on_progress, prefix_cache=prefix_cache)
    if result.best.finish_reason == "interrupted":
        return result

    def stop_refining() -> bool:  # asked before each candidate is refined: the status says so
        if on_progress is not None:
            on_progress(SearchProgress(
                strategy="tree+grad", stage="refining", forward_passes=result.forward_passes,
                budget=config.search_budget, candidates=len(result.candidates), best_score=result.best.score,
                best_text=result.best.text, best_is_complete=True, seconds=time.perf_counter() - started))
        return deadline.passed() or (should_stop is not None and should_stop())

    try:
        return refine_result(lm, prompt_ids, config, result, make_constraint=make_constraint,
                             should_stop=stop_refining)
    except KeyboardInterrupt:  # Ctrl-C while refining: the tree's answers are the best so far
        return mark_interrupted(result)
