"""The sampling math: what each filter keeps, and that draws are reproducible by seed."""

from __future__ import annotations

import math

import torch

from agent.config import DecodeConfig
from agent.decoding.sampling import (
    apply_repetition_penalty,
    choose_token,
    min_p_filter,
    processed_logits,
    top_k_filter,
    top_p_filter,
)


def kept(logits: torch.Tensor) -> list[int]:
    return [i for i, v in enumerate(logits.tolist()) if v != -math.inf]


def test_top_p_keeps_smallest_set_reaching_p() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    assert kept(top_p_filter(logits, 0.5)) == [0]
    assert kept(top_p_filter(logits, 0.6)) == [0, 1]
    assert kept(top_p_filter(logits, 0.8)) == [0, 1]
    assert kept(top_p_filter(logits, 0.81)) == [0, 1, 2]
    assert kept(top_p_filter(logits, 1.0)) == [0, 1, 2, 3]
    # order of the vocabulary does not matter
    shuffled = torch.tensor([0.15, 0.5, 0.05, 0.3]).log()
    assert kept(top_p_filter(shuffled, 0.6)) == [1, 3]


def test_top_k_keeps_k_best() -> None:
    logits = torch.tensor([1.0, 5.0, 3.0, 4.0, 2.0])
    assert kept(top_k_filter(logits, 2)) == [1, 3]
    assert kept(top_k_filter(logits, 0)) == [0, 1, 2, 3, 4]


def test_min_p_drops_unlikely_tokens() -> None:
    probs = torch.tensor([0.6, 0.3, 0.07, 0.03])
    assert kept(min_p_filter(probs.log(), 0.1)) == [0, 1, 2]


def test_temperature_sharpens_and_flattens() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0])
    cold = torch.softmax(processed_logits(logits, DecodeConfig(strategy="sample", temperature=0.5), []), -1)
    hot = torch.softmax(processed_logits(logits, DecodeConfig(strategy="sample", temperature=2.0), []), -1)
    plain = torch.softmax(logits, -1)
    assert cold[0] > plain[0] > hot[0]
    assert torch.allclose(cold, torch.softmax(logits / 0.5, -1))


def test_repetition_penalty_lowers_seen_tokens() -> None:
    logits = torch.tensor([2.0, -1.0, 1.0])
    out = apply_repetition_penalty(logits, [0, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 1.0]


def test_sampling_is_reproducible_by_seed_and_follows_the_distribution() -> None:
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0])
    config = DecodeConfig(strategy="sample", temperature=1.0)

    def draws(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        return [choose_token(logits, config, [], gen) for _ in range(2000)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    counts = torch.bincount(torch.tensor(draws(7)), minlength=4).float() / 2000
    assert torch.allclose(counts, torch.softmax(logits, -1), atol=0.04)


def test_greedy_respects_the_mask() -> None:
    logits = torch.tensor([5.0, 1.0, 3.0])
    allowed = torch.tensor([False, True, True])
    assert choose_token(logits, DecodeConfig(), [], None, allowed) == 2
