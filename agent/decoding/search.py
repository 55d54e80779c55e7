"""Search strategies behind one call: beam, best-of-N, tree and tree+grad (greedy and sample wrap decode).

Every strategy returns a `SearchResult` whose candidates are ranked by the one shared score of
`agent.scoring`; the REPL prints `summary_line`, `/alts` shows `render_alts`, `/tree` `render_tree`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.results import Candidate, SearchResult
from agent.model.runtime import LoadedModel

SEARCH_STRATEGIES = ("greedy", "sample", "beam", "best-of-n", "tree", "tree+grad")


def search_response(
    lm: LoadedModel,
    prompt_ids: list[int],
    config: DecodeConfig,
    *,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Run the configured strategy on one prompt and return its ranked candidates."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    started = time.perf_counter()
    strategy = config.strategy
    if strategy in ("greedy", "sample"):
        result = _single(lm, prompt_ids, config, make_constraint, should_stop)
    elif strategy == "beam":
        from agent.decoding.beam import beam_search

        result = beam_search(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop)
    elif strategy == "best-of-n":
        from agent.decoding.best_of_n import best_of_n

        result = best_of_n(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop)
    elif strategy in ("tree", "tree+grad"):
        from agent.decoding.tree import tree_search

        result = tree_search(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop)
        if strategy == "tree+grad" and result.best.finish_reason != "interrupted":
            from agent.decoding.refine import refine_result

            result = refine_result(lm, prompt_ids, config, result, make_constraint=make_constraint,
                                   should_stop=should_stop)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(SEARCH_STRATEGIES)}")
    result.strategy = strategy
    _run_deferred_call(lm, prompt_ids, config, result, should_stop)
    result.seconds = time.perf_counter() - started
    return result


def _single(lm: LoadedModel, prompt_ids: list[int], config: DecodeConfig,
            make_constraint: Callable[[], ResponseConstraint | None] | None,
            should_stop: Callable[[], bool] | None) -> SearchResult:
    """greedy / sample through the plain decode loop, scored like every other strategy."""
    from agent.decoding.decode import decode
    from agent.decoding.scoring import score_parts

    constraint = make_constraint() if make_constraint is not None else None
    out = decode(lm, prompt_ids, config, constraint=constraint, should_stop=should_stop)
    parts = score_parts(out.logprobs, out.island_mask, out.token_ids, eos_logprob=out.eos_logprob, text=out.text)
    cand = Candidate(text=out.text, token_ids=out.token_ids, island_mask=out.island_mask, logprobs=out.logprobs,
                     score=parts.value, tool_calls=out.tool_calls, strategy=config.strategy,
                     finish_reason=out.finish_reason, eos_logprob=out.eos_logprob, empty=parts.empty,
                     degenerate=parts.degenerate, constraint=constraint)
    return SearchResult(best=cand, candidates=[cand], forward_passes=out.forward_passes,
                        token_evaluations=out.new_tokens)


def _run_deferred_call(lm: LoadedModel, prompt_ids: list[int], config: DecodeConfig, result: SearchResult,
                       should_stop: Callable[[], bool] | None) -> None:
    """Side-effect tools wait for the chosen path: run the best branch's pending call, then finish it.

    The constraint (agent.grammar_constraint) stops a branch at a side-effect call when
    defer_side_effects is on; once the branch is chosen the call runs (after confirmation, inside
    run_pending) and the response continues greedily from its island with the plain decode loop.
    """
    best = result.best
    constraint = best.constraint
    if constraint is None or getattr(constraint, "pending_call", None) is None:
        return
    from agent.decoding.decode import decode
    from agent.decoding.scoring import score_parts

    pending = constraint.pending_call
    step = constraint.run_pending()
    token_ids, islands, logprobs = list(best.token_ids), list(best.island_mask), list(best.logprobs)
    # The branch recorded the call when it paused (not run yet); the executed record replaces it.
    record = getattr(pending, "record", None)
    tool_calls = [c for c in best.tool_calls if c is not record and not (
        c.result is None and c.error is None and c.call_text and c.call_text == getattr(pending, "call_text", None))]
    if step is not None:
        if step.tool_call is not None:
            tool_calls.append(step.tool_call)
        token_ids += list(step.forced_token_ids)
        islands += [step.forced_is_island] * len(step.forced_token_ids)
        logprobs += [0.0] * len(step.forced_token_ids)
    left = config.max_new_tokens - sum(1 for i in islands if not i)
    if left > 0 and not constraint.is_finished():
        rest = decode(lm, list(prompt_ids) + token_ids, config.replace(strategy="greedy", max_new_tokens=left),
                      constraint=constraint, should_stop=should_stop)
        token_ids += rest.token_ids
        islands += rest.island_mask
        logprobs += rest.logprobs
        tool_calls += rest.tool_calls
        result.forward_passes += rest.forward_passes
        best.finish_reason = rest.finish_reason
    else:
        best.finish_reason = "grammar" if constraint.is_finished() else "length"
    text = lm.tokenizer.decode(token_ids, skip_special_tokens=True)
    parts = score_parts(logprobs, islands, token_ids, text=text)
    best.token_ids, best.island_mask, best.logprobs, best.tool_calls = token_ids, islands, logprobs, tool_calls
    best.text, best.score, best.eos_logprob = text, parts.value, None
