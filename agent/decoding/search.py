"""One call for every strategy: look it up in the registry, run it, finish a deferred side-effect call.

`search_response` is what the turn (agent.turn), the tests and the bench call; the strategies
themselves live one per module behind agent.decoding.strategies.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.decode import decode, response_text
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.loop_guard import model_text
from agent.decoding.progress import ProgressSink
from agent.decoding.results import SearchResult, mark_interrupted
from agent.decoding.scoring import score_parts
from agent.decoding.strategies import strategy_for
from agent.model.backend import ModelBackend
from agent.tooling.deferred import run_deferred_call


def search_response(
    lm: ModelBackend,
    prompt_ids: list[int],
    config: DecodeConfig,
    *,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_token: Callable[[str], None] | None = None,
    prefix_cache: PrefixCache | None = None,
    on_progress: ProgressSink | None = None,
) -> SearchResult:
    """Run the configured strategy on one prompt and return its ranked candidates (a strategy that
    explores branches tells on_progress how it stands as it goes)."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    started = time.perf_counter()
    strategy = strategy_for(config.strategy)
    result = strategy.run(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop,
                          on_token=on_token, prefix_cache=prefix_cache, on_progress=on_progress)
    if result.best.finish_reason != "interrupted":  # a search the user stopped runs no tool after it
        try:
            seconds_left = config.time_limit - (time.perf_counter() - started) if config.time_limit > 0 else None
            result = continue_deferred_call(lm, prompt_ids, config, result, should_stop, seconds_left)
        except KeyboardInterrupt:  # Ctrl-C while the chosen branch's call runs: the answer up to the call
            result = mark_interrupted(result)
    return dataclasses.replace(result, strategy=config.strategy, seconds=time.perf_counter() - started)


def continue_deferred_call(lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig, result: SearchResult,
                           should_stop: Callable[[], bool] | None, seconds_left: float | None = None) -> SearchResult:
    """Side-effect tools wait for the chosen path: run the best branch's pending call, then finish it.

    The call runs through agent.tooling.deferred; the response then continues from its island under the
    same strategy (its loop guard included: the plain greedy loop wrote "The user declined." ten times after
    a declined note, bench/README.md batched), with the passes and seconds the search left, or at least
    what a greedy continuation takes. Returns a new result (the same one when nothing is pending).
    """
    best = result.best
    constraint = best.constraint
    if constraint is None or constraint.pending_call is None:
        return result
    step, tool_calls = run_deferred_call(constraint, best.tool_calls)
    forced = list(step.forced_token_ids)
    token_ids = best.token_ids + forced
    islands = best.island_mask + [step.forced_is_island] * len(forced)
    logprobs = best.logprobs + [0.0] * len(forced)
    forward_passes = result.forward_passes
    left = config.max_new_tokens - sum(1 for island in islands if not island)
    if left > 0 and not constraint.is_finished():
        if seconds_left is not None and seconds_left <= 0:  # the time is spent: finish as fast as it goes
            rest = decode(lm, list(prompt_ids) + token_ids, config.replace(strategy="greedy", max_new_tokens=left),
                          constraint=constraint, should_stop=should_stop)
            forward_passes += rest.forward_passes
        else:
            rest_config = config.replace(max_new_tokens=left, budget=max(config.search_budget - forward_passes, left),
                                         time_limit=seconds_left or 0.0)
            continued = search_response(lm, list(prompt_ids) + token_ids, rest_config,
                                        make_constraint=lambda: constraint.fork(), should_stop=should_stop)
            rest, forward_passes = continued.best, forward_passes + continued.forward_passes
        token_ids += rest.token_ids
        islands += rest.island_mask
        logprobs += rest.logprobs
        tool_calls += rest.tool_calls
        finish_reason = rest.finish_reason
    else:
        finish_reason = "grammar" if constraint.is_finished() else "length"
    text = response_text(lm.tokenizer, token_ids, keep_special=True)  # constrained: a native island's tokens stay
    if finish_reason == "stop":  # the continuation ended on a stop string: never shown (as decode and the tree)
        text = text[:min((text.index(s) for s in config.stop if s and s in text), default=len(text))]
    parts = score_parts(logprobs, islands, token_ids, text=text, loop_text=model_text(lm.tokenizer, token_ids, islands))
    finished = dataclasses.replace(best, token_ids=token_ids, island_mask=islands, logprobs=logprobs,
                                   tool_calls=tool_calls, text=text, score=parts.value, eos_logprob=None,
                                   finish_reason=finish_reason)
    candidates = [finished if candidate is best else candidate for candidate in result.candidates]
    return dataclasses.replace(result, best=finished, candidates=candidates, forward_passes=forward_passes)
