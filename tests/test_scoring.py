"""The shared score: exact log-likelihood, islands excluded, mean per model token, guards for empty and loops."""

from __future__ import annotations

import math

import pytest

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.decoding.scoring import (
    DEGENERATE_PENALTY,
    EMPTY_SCORE,
    has_loop,
    score_parts,
    score_sequence,
    sequence_logprobs,
    tail_loop,
)


def _prompt(lm) -> list[int]:
    return lm.tokenizer.encode("<|user|>\nhello there<|end|>\n<|assistant|>\n")


def test_mean_log_prob_per_model_token_skips_islands_and_counts_eos() -> None:
    parts = score_parts([-1.0, 0.0, 0.0, -3.0], [False, True, True, False], [5, 6, 7, 8], eos_logprob=-2.0)
    assert parts.model_tokens == 3
    assert parts.value == pytest.approx((-1.0 - 3.0 - 2.0) / 3)
    # The island tokens' numbers are ignored whatever they are.
    assert score_parts([-1.0, -50.0, -3.0], [False, True, False], [5, 6, 8]).value == pytest.approx(-2.0)


def test_empty_and_whitespace_responses_rank_below_everything() -> None:
    assert score_parts([], [], []).value == EMPTY_SCORE
    assert score_parts([0.0, 0.0], [True, True], [1, 2]).value == EMPTY_SCORE  # only an island
    assert score_parts([-0.1], [False], [3], text="   ").value == EMPTY_SCORE
    worst_normal = score_parts([-20.0], [False], [3]).value
    assert EMPTY_SCORE < worst_normal


def test_loops_are_detected_and_penalised() -> None:
    assert tail_loop([1, 2] + [7] * 8)
    assert not tail_loop([1, 2] + [7] * 7)
    assert tail_loop([9, 1, 2, 1, 2, 1, 2, 1, 2])
    assert tail_loop([5, 1, 2, 3, 1, 2, 3, 1, 2, 3])
    assert has_loop([4, 4, 4, 4, 4, 4, 4, 4, 9, 10])  # a loop in the middle counts too
    assert not has_loop(list(range(40)))
    # The shared score reads loops from the text (agent.decoding.loop_guard; tests/test_loop_guard.py).
    looping_text = "98765 + 43210 = " * 10
    looping = score_parts([-0.5] * 10, [False] * 10, [3] * 10, text=looping_text)
    assert looping.degenerate
    assert looping.value == pytest.approx(-0.5 - DEGENERATE_PENALTY)
    # Repeated island text (tool results) is not the model looping: the guard reads the model's own text.
    islands = score_parts([-0.5, 0, 0, 0, 0, 0, 0, 0, 0, -0.5], [False] + [True] * 8 + [False], [1] + [3] * 8 + [2],
                          text="A" + looping_text + "B", loop_text="AB")
    assert not islands.degenerate


def test_full_forward_scores_match_the_decode_loops_incremental_logprobs(tiny_lm) -> None:
    prompt = _prompt(tiny_lm)
    out = decode(tiny_lm, prompt, DecodeConfig(strategy="sample", max_new_tokens=12, seed=3))
    lps, eos_lp = sequence_logprobs(tiny_lm, prompt, out.token_ids, eos_id=tiny_lm.tokenizer.eos_token_id)
    assert len(lps) == len(out.token_ids)
    for fresh, incremental in zip(lps, out.logprobs, strict=False):
        assert fresh == pytest.approx(incremental, abs=1e-4)
    assert eos_lp is not None and eos_lp < 0
    expected = score_parts(out.logprobs, out.island_mask, out.token_ids).value
    assert score_sequence(tiny_lm, prompt, out.token_ids, out.island_mask) == pytest.approx(expected, abs=1e-4)
    assert math.isfinite(expected)


def test_empty_prompt_is_refused_with_a_clear_message(tiny_lm) -> None:
    with pytest.raises(ValueError, match="prompt is empty"):
        score_sequence(tiny_lm, [], [1, 2], [False, False])
    with pytest.raises(ValueError, match="same length"):
        score_parts([-1.0], [False, False], [1])
