"""Baselines as strategies (greedy, sample, beam, best-of-N), all ranked by the one shared score."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.decoding.scoring import score_sequence
from agent.decoding.search import search_response
from agent.render import render_alts, summary_line
from agent.render_tree import render_tree


def _prompt(lm, text: str = "hello there") -> list[int]:
    return lm.tokenizer.encode(f"<|user|>\n{text}<|end|>\n<|assistant|>\n")


def _exact(lm, prompt, cand) -> float:
    eos = min(lm.eos_token_ids) if cand.eos_logprob is not None else None
    return score_sequence(lm, prompt, cand.token_ids, cand.island_mask, eos_id=eos, text=cand.text)


@pytest.mark.parametrize("text", ["hello there", "capital of France", "The quick brown fox"])
def test_beam_of_width_one_is_greedy(tiny_lm, text: str) -> None:
    # Raw text prompts: through the chat template the random tiny model answers only newlines, which
    # the shared score ranks as empty (so beam rightly prefers something else).
    prompt = tiny_lm.tokenizer.encode(text)
    # Short enough that greedy cannot loop (the search strategies treat loops as dead ends).
    greedy = decode(tiny_lm, prompt, DecodeConfig(strategy="greedy", max_new_tokens=7))
    beam = search_response(tiny_lm, prompt, DecodeConfig(strategy="beam", beam_width=1, max_new_tokens=7))
    assert beam.token_ids == greedy.token_ids
    assert beam.text == greedy.text
    assert beam.forward_passes <= greedy.forward_passes
    assert beam.text.strip() and not beam.best.degenerate


def test_beam_keeps_width_candidates_with_exact_scores(tiny_lm) -> None:
    prompt = _prompt(tiny_lm)
    result = search_response(tiny_lm, prompt, DecodeConfig(strategy="beam", beam_width=3, max_new_tokens=9))
    assert len(result.candidates) >= 3
    for cand in result.candidates:
        assert cand.score == pytest.approx(_exact(tiny_lm, prompt, cand), abs=1e-4)
    assert result.forward_passes <= 9
    assert result.kv_reuse_ratio == pytest.approx(1.0)


def test_best_of_n_picks_the_highest_exact_score(tiny_lm) -> None:
    prompt = _prompt(tiny_lm, "What is 12 * 7?")
    config = DecodeConfig(strategy="best-of-n", num_samples=6, max_new_tokens=10, seed=5)
    result = search_response(tiny_lm, prompt, config)
    assert len(result.candidates) >= 3  # distinct samples
    exact = [_exact(tiny_lm, prompt, c) for c in result.candidates]
    assert [c.score for c in result.candidates] == pytest.approx(exact, abs=1e-4)
    assert result.best.score == pytest.approx(max(exact), abs=1e-4)
    # All samples advance in lockstep: one pass per step, not one per sample and step.
    assert result.forward_passes <= 10
    # The same seed gives the same answer.
    again = search_response(tiny_lm, prompt, config)
    assert again.token_ids == result.token_ids


def test_greedy_and_sample_go_through_the_decode_loop_and_share_the_score(tiny_lm) -> None:
    prompt = _prompt(tiny_lm)
    for strategy in ("greedy", "sample"):
        result = search_response(tiny_lm, prompt, DecodeConfig(strategy=strategy, max_new_tokens=6))
        assert len(result.candidates) == 1
        assert result.best.score == pytest.approx(_exact(tiny_lm, prompt, result.best), abs=1e-4)


def test_what_the_repl_shows(tiny_lm) -> None:
    result = search_response(tiny_lm, _prompt(tiny_lm), DecodeConfig(strategy="tree", max_new_tokens=6, budget=20))
    line = summary_line(result)
    assert "candidates" in line and "forward" in line and f"{result.best.score:.3f}" in line
    console = Console(record=True, width=140)
    console.print(render_alts(result))
    console.print(render_tree(result, tiny_lm.tokenizer))
    shown = console.export_text()
    for cand in result.candidates:
        assert f"{cand.score:.3f}" in shown
    assert "KV reuse" in shown
    json.dumps({"candidates": [c.to_dict() for c in result.candidates], "refinement": result.refinement})


def test_unknown_strategy_and_empty_prompt_are_clear_errors(tiny_lm) -> None:
    config = DecodeConfig(strategy="beam")
    config.strategy = "astar"
    with pytest.raises(ValueError, match="unknown strategy 'astar'"):
        search_response(tiny_lm, _prompt(tiny_lm), config)
    with pytest.raises(ValueError, match="prompt is empty"):
        search_response(tiny_lm, [], DecodeConfig(strategy="tree"))
