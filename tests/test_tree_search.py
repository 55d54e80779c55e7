"""Tree search: exact branch scores on one shared KV tree, dead ends, budget, annealing, grammar."""

from __future__ import annotations

import itertools
import json

import lark
import pytest

from agent.config import DecodeConfig
from agent.decoding.scoring import sequence_logprobs
from agent.decoding.search import search_response
from agent.decoding.tree import COOL_FRACTION, temperature_at, tree_search

WORDS_GRAMMAR = 'start: WORD (" " WORD)*\nWORD: /(yes|no|maybe)/\n'


def _prompt(lm, text: str = "hello there") -> list[int]:
    return lm.tokenizer.encode(f"<|user|>\n{text}<|end|>\n<|assistant|>\n")


def _path_ids(node) -> list[int]:
    return [t for n in node.path() for t in n.tokens]


def test_every_branch_scores_like_a_fresh_full_forward_pass(tiny_lm) -> None:
    prompt = _prompt(tiny_lm)
    result = tree_search(tiny_lm, prompt, DecodeConfig(strategy="tree", max_new_tokens=10, budget=30, seed=1))
    evaluated = [n for n in result.tree.subtree() if n.next_logprobs is not None and n.parent is not None]
    depths = {n.model_tokens for n in evaluated}
    assert len(evaluated) > 20 and len(depths) > 5  # batches mixed branches of different depths
    eos = tiny_lm.tokenizer.eos_token_id
    for node in evaluated[::3]:
        ids = _path_ids(node)
        fresh, fresh_eos = sequence_logprobs(tiny_lm, prompt, ids, eos_id=eos)
        incremental = [lp for n in node.path() for lp in n.logprobs]
        assert fresh == pytest.approx(incremental, abs=1e-4)
        assert node.sum_logprob == pytest.approx(sum(fresh), abs=1e-4)
        # The node's next-token distribution is exact too (it scores its children).
        assert float(node.next_logprobs[eos]) == pytest.approx(fresh_eos, abs=1e-4)
    for cand in result.candidates:
        fresh, _ = sequence_logprobs(tiny_lm, prompt, cand.token_ids)
        assert fresh == pytest.approx(cand.logprobs, abs=1e-4)


def test_no_prefix_is_recomputed_and_the_budget_holds(tiny_lm) -> None:
    prompt = _prompt(tiny_lm)
    for budget in (4, 13, 40):
        result = tree_search(tiny_lm, prompt, DecodeConfig(strategy="tree", max_new_tokens=12, budget=budget))
        assert result.forward_passes <= budget
        assert result.kv_reuse_ratio == pytest.approx(1.0)
        evaluated = [n for n in result.tree.subtree() if n.kv is not None and n.parent is not None]
        # Each node's tokens went through the model once: evaluations == tokens held by the tree.
        assert result.token_evaluations == sum(len(n.tokens) for n in evaluated)
        assert len(result.candidates) >= 1


def test_dead_ends_are_remembered_and_never_expanded(tiny_lm) -> None:
    # The tiny random model loops readily ("x x x x ..."): loops are dead ends (agent.decoding.loop_guard
    # calls a loop once it has gone round for a few dozen characters: long enough answers are needed).
    result = tree_search(tiny_lm, _prompt(tiny_lm), DecodeConfig(strategy="tree", max_new_tokens=64, budget=100))
    nodes = result.tree.subtree()
    dead = [n for n in nodes if n.status == "dead"]
    assert dead, "expected some dead ends (loops) on the tiny random model"
    assert all(not n.children for n in dead)
    paths = [tuple(_path_ids(n)) + ((-1,) if n.is_eos else ()) for n in nodes]
    assert len(paths) == len(set(paths)), "a branch was expanded twice"
    for node in nodes:
        assert set(node.children) <= node.tried
    assert not any(c.degenerate or c.empty for c in result.candidates)


def test_returns_the_best_k_complete_candidates_ranked(tiny_lm) -> None:
    config = DecodeConfig(strategy="tree", max_new_tokens=8, budget=40, top_candidates=3)
    result = search_response(tiny_lm, _prompt(tiny_lm), config)
    assert len(result.candidates) == 3
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert result.best is result.candidates[0]
    assert all(c.finish_reason in ("eos", "length", "grammar") for c in result.candidates)
    json.dumps([c.to_dict() for c in result.candidates])
    assert result.text == result.best.text and result.new_tokens == result.best.new_tokens


def test_annealing_cools_from_the_configured_temperature() -> None:
    config = DecodeConfig(strategy="tree", temperature=1.2)
    temps = [temperature_at(config, p / 10) for p in range(11)]
    assert temps[0] == pytest.approx(1.2)
    assert temps[-1] == pytest.approx(1.2 * COOL_FRACTION)
    assert all(a > b for a, b in itertools.pairwise(temps))
    assert temperature_at(config.replace(temperature=0.0), 0.5) == 0.0


def test_tree_is_at_least_as_good_as_beam(tiny_lm) -> None:
    prompt = _prompt(tiny_lm, "What is the capital of France?")
    beam = search_response(tiny_lm, prompt, DecodeConfig(strategy="beam", max_new_tokens=10, budget=100))
    tree = search_response(tiny_lm, prompt, DecodeConfig(strategy="tree", max_new_tokens=10,
                                                         budget=2 * beam.forward_passes))
    assert tree.forward_passes <= 2 * beam.forward_passes
    assert tree.best.score >= beam.best.score - 1e-6


def test_grammar_forks_per_branch_and_every_answer_parses(tiny_lm) -> None:
    from agent.grammar.constraint import make_constraint

    parser = lark.Lark(WORDS_GRAMMAR)
    for strategy in ("tree", "beam", "best-of-n"):
        result = search_response(tiny_lm, _prompt(tiny_lm), DecodeConfig(strategy=strategy, max_new_tokens=12,
                                                                         budget=30),
                                 make_constraint=lambda: make_constraint(tiny_lm, None, WORDS_GRAMMAR))
        assert result.candidates
        for cand in result.candidates:
            parser.parse(cand.text)  # raises if a branch escaped its grammar


def test_should_stop_interrupts_the_search(tiny_lm) -> None:
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    result = search_response(tiny_lm, _prompt(tiny_lm), DecodeConfig(strategy="tree", max_new_tokens=12, budget=50),
                             should_stop=stop)
    assert result.finish_reason == "interrupted"
    assert result.forward_passes < 10


def _walk(tree, text: str):
    """Grow the branch that spells `text` (as the model might), evaluating as a search would."""
    node = tree.root
    for token in tree.lm.tokenizer.encode(text):
        child = tree.grow(node, token)
        if tree.needs_evaluation(child):
            tree.evaluate([child])
        node = child
    return node


def test_pure_tools_run_on_branches_and_side_effects_wait_for_the_chosen_one(tiny_lm) -> None:
    from agent.decoding.results import SearchResult
    from agent.decoding.search import continue_deferred_call
    from agent.decoding.token_tree import TokenTree
    from agent.grammar.constraint import make_constraint
    from agent.tooling.registry import ToolRegistry
    from agent.tooling.spec import tool

    bumps: list[int] = []

    @tool(pure=False, in_process=True)  # records its calls in this process
    def bump(n: int) -> str:
        """Add n to a counter (a side effect)."""
        bumps.append(n)
        return f"bumped {n}"

    registry = ToolRegistry()
    registry.register(bump)
    from agent.tools.calc import (
        calc,  # a built-in pure tool, written as users write theirs
    )

    registry.register(calc)
    config = DecodeConfig(strategy="tree", max_new_tokens=40)
    prompt = _prompt(tiny_lm)

    def constraint():
        return make_constraint(tiny_lm, registry, confirm=lambda record: True, defer_side_effects=True)

    # A pure tool on a branch runs at once; its result is an island the model is not scored on.
    tree = TokenTree(tiny_lm, prompt, config, constraint())
    tree.start()
    node = _walk(tree, 'CALL(calc, expr="2 * 3")')
    assert node.tool_call is not None and node.tool_call.result == "6"
    assert any(node.island) and "=> 6" in tiny_lm.tokenizer.decode(node.tokens)
    assert node.logprobs[node.island.index(True)] == 0.0
    # A side-effect call on a branch only pauses it: nothing runs until the branch is chosen.
    tree = TokenTree(tiny_lm, prompt, config, constraint())
    tree.start()
    node = _walk(tree, "CALL(bump, n=1)")
    assert node.status == "complete" and node.reason == "pending call"
    assert bumps == []
    cand = tree.candidate(node, "tree")
    assert cand.finish_reason == "tool"
    result = SearchResult(best=cand, candidates=[cand], forward_passes=tree.forward_passes)
    result = continue_deferred_call(tiny_lm, prompt, config, result, None)
    assert bumps == [1]
    assert "=> bumped 1" in result.text
    assert [c.tool for c in result.tool_calls] == ["bump"] and not result.tool_calls[0].speculative
    assert any(result.island_mask) and result.finish_reason in ("eos", "grammar", "length")
