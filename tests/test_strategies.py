"""The strategies are one family: one registry keyed by agent.config.STRATEGIES, one result shape."""

from __future__ import annotations

import copy

import pytest

from agent.config import STRATEGIES, DecodeConfig
from agent.decoding.refine import refine_result
from agent.decoding.results import SearchResult
from agent.decoding.search import search_response
from agent.decoding.strategies import STRATEGY_REGISTRY, strategy_for
from agent.decoding.tree import tree_search
from agent.model.runtime import LoadedModel


def _prompt(lm: LoadedModel) -> list[int]:
    return lm.tokenizer.encode("The quick brown fox")


def test_the_registry_covers_exactly_the_configured_strategies() -> None:
    assert tuple(STRATEGY_REGISTRY) == STRATEGIES
    for name, strategy in STRATEGY_REGISTRY.items():
        assert strategy.name == name
        # Streaming and exploring are the two ways a turn drives a strategy; none is both.
        assert strategy.streams_tokens != strategy.explores_branches
    assert {n for n, s in STRATEGY_REGISTRY.items() if s.streams_tokens} == {"greedy", "sample"}
    with pytest.raises(ValueError, match="unknown strategy 'astar'"):
        strategy_for("astar")


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_returns_a_ranked_search_result(tiny_lm: LoadedModel, name: str) -> None:
    config = DecodeConfig(strategy=name, max_new_tokens=6, budget=24, grad_steps=2, top_candidates=2)
    result = search_response(tiny_lm, _prompt(tiny_lm), config)
    assert isinstance(result, SearchResult)
    assert result.strategy == name and result.candidates
    assert result.best is result.candidates[0]
    assert all(a.score >= b.score for a, b in zip(result.candidates, result.candidates[1:], strict=False)
               if not b.refined)
    assert result.text == result.best.text and result.forward_passes > 0


def test_refine_result_leaves_its_input_as_it_was(tiny_lm: LoadedModel) -> None:
    prompt = _prompt(tiny_lm)
    config = DecodeConfig(strategy="tree+grad", max_new_tokens=6, budget=24, grad_steps=2, top_candidates=2)
    found = tree_search(tiny_lm, prompt, config.replace(strategy="tree"))
    before = copy.copy(found)
    candidates_before = [copy.copy(c) for c in found.candidates]
    refined = refine_result(tiny_lm, prompt, config, found)
    assert refined is not found and refined.strategy == "tree+grad" and refined.refinement["tried"] > 0
    assert found.candidates == candidates_before
    assert (found.forward_passes, found.backward_passes, found.refinement, found.strategy, found.best) == \
        (before.forward_passes, before.backward_passes, before.refinement, before.strategy, before.best)
