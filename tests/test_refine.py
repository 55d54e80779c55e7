"""tree+grad: gradient refinement on relaxed tokens, exact rescoring, replace only when better."""

from __future__ import annotations

import torch

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.decoding.refine import refine_result, refine_tokens
from agent.decoding.results import Candidate, SearchResult
from agent.decoding.scoring import score_parts, score_sequence, sequence_logprobs
from agent.decoding.search import search_response


def _prompt(lm, text: str = "The quick brown fox") -> list[int]:
    # A raw text prompt: through the chat template the random tiny model answers only newlines.
    return lm.tokenizer.encode(text)


def _candidate(lm, prompt: list[int], ids: list[int], islands: list[bool]) -> Candidate:
    lps, _ = sequence_logprobs(lm, prompt, ids)
    lps = [0.0 if i else lp for lp, i in zip(lps, islands, strict=False)]
    text = lm.tokenizer.decode(ids, skip_special_tokens=True)
    parts = score_parts(lps, islands, ids, text=text)
    return Candidate(text=text, token_ids=ids, island_mask=islands, logprobs=lps, score=parts.value,
                     strategy="tree", finish_reason="length")


def _with_poor_token(lm, prompt: list[int], position: int) -> tuple[list[int], list[int]]:
    good = decode(lm, prompt, DecodeConfig(strategy="greedy", max_new_tokens=7)).token_ids
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([prompt + good[:position]])).logits[0, -1]
    poor = int(torch.argmin(logits).item())  # the least likely token there
    return good, good[:position] + [poor] + good[position + 1:]


def test_refinement_repairs_a_deliberately_poor_token(tiny_lm) -> None:
    prompt = _prompt(tiny_lm)
    _, spoiled = _with_poor_token(tiny_lm, prompt, 3)
    cand = _candidate(tiny_lm, prompt, spoiled, [False] * len(spoiled))
    result = SearchResult(best=cand, candidates=[cand], forward_passes=0)
    config = DecodeConfig(strategy="tree+grad", grad_steps=6, top_candidates=1)
    refined = refine_result(tiny_lm, prompt, config, result)
    assert refined.refinement["tried"] == 1 and refined.refinement["improved"] == 1
    assert refined.refinement["mean_gain"] > 0
    best = refined.best
    assert best.refined and best.accepted and best.parent is not None
    assert best.score_after > best.score_before == cand.score
    # The improvement is real: a fresh full forward pass agrees.
    assert score_sequence(tiny_lm, prompt, best.token_ids, best.island_mask) == \
        __import__("pytest").approx(best.score, abs=1e-4)
    assert best.score > cand.score
    assert refined.backward_passes >= 2 * config.grad_steps - 2  # Langevin and HMC runs
    assert best.to_dict()["accepted"] is True and best.to_dict()["grad_steps"] > 0


def test_islands_and_prompt_stay_fixed(tiny_lm) -> None:
    prompt = _prompt(tiny_lm)
    _, spoiled = _with_poor_token(tiny_lm, prompt, 1)
    islands = [False, False, True, True, True, False, False]
    for method in ("langevin", "hmc"):
        outcome = refine_tokens(tiny_lm, prompt, spoiled, islands, steps=5, method=method,
                                generator=torch.Generator().manual_seed(0))
        assert outcome.backward_passes == 5
        assert outcome.proposals
        for proposal in outcome.proposals:
            assert [t for t, i in zip(proposal, islands, strict=False) if i] == \
                [t for t, i in zip(spoiled, islands, strict=False) if i]
            assert len(proposal) == len(spoiled)


def test_a_refined_candidate_never_replaces_a_better_parent(tiny_lm) -> None:
    prompt = tiny_lm.tokenizer.encode("<|user|>\nWhat is 12 * 7?<|end|>\n<|assistant|>\n")
    config = DecodeConfig(strategy="tree+grad", max_new_tokens=8, budget=24, grad_steps=4, top_candidates=3)
    tree_only = search_response(tiny_lm, prompt, config.replace(strategy="tree"))
    refined = search_response(tiny_lm, prompt, config)
    assert refined.best.score >= tree_only.best.score - 1e-9
    assert refined.backward_passes > 0 and refined.forward_passes > tree_only.forward_passes
    ref = refined.refinement
    assert set(ref) == {"tried", "improved", "mean_gain"} and ref["tried"] >= 1
    for cand in refined.candidates:
        if cand.refined and not cand.accepted:
            assert cand.score_after <= cand.score_before
            assert cand is not refined.best
        if cand.refined:
            parent = refined.candidates[cand.parent]
            assert not parent.refined and parent.score == cand.score_before
    # A refinement that only rediscovers an answer the tree had never shows up as a second copy of it.
    tree_answers = {tuple(c.token_ids) for c in refined.candidates if not c.refined}
    assert not refined.best.refined or tuple(refined.best.token_ids) not in tree_answers
