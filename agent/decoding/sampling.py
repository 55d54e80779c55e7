"""Sampling math: logits -> next token (greedy, temperature, top-k, top-p, min-p, repetition penalty).

Every function works on one row of logits (shape [vocab]); masked-out tokens are -inf. Search strategies
reuse these to draw their branches, so all strategies sample the same way.
"""

from __future__ import annotations

import torch

from agent.config import DecodeConfig

NEG_INF = float("-inf")


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: list[int], penalty: float) -> torch.Tensor:
    """CTRL-style penalty: divide positive logits (multiply negative ones) of tokens already generated."""
    if penalty == 1.0 or not previous_ids:
        return logits
    ids = torch.tensor(sorted(set(previous_ids)), dtype=torch.long, device=logits.device)
    chosen = logits.index_select(0, ids)
    chosen = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    out = logits.clone()
    out.index_copy_(0, ids, chosen)
    return out


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest logits (ties at the k-th value are kept too)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k).values[-1]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches p (nucleus sampling)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    # A token is dropped when the tokens ranked above it already reach p; the first is always kept.
    drop_sorted = mass_before >= p
    drop_sorted[0] = False
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below min_p times the top token's probability."""
    if min_p <= 0.0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs < min_p * probs.max(), NEG_INF)


def apply_mask(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Set disallowed tokens to -inf (allowed: bool mask of the same width, or None)."""
    if allowed is None:
        return logits
    return logits.masked_fill(~allowed, NEG_INF)


def processed_logits(
    logits: torch.Tensor,
    config: DecodeConfig,
    previous_ids: list[int],
    allowed: torch.Tensor | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """Mask, penalise, scale by temperature and truncate, in the usual order; returns logits."""
    out = apply_mask(logits.float(), allowed)
    out = apply_repetition_penalty(out, previous_ids, config.repetition_penalty)
    temp = config.temperature if temperature is None else temperature
    if temp > 0:
        out = out / temp
    out = top_k_filter(out, config.top_k)
    out = top_p_filter(out, config.top_p)
    out = min_p_filter(out, config.min_p)
    return out


def choose_token(
    logits: torch.Tensor,
    config: DecodeConfig,
    previous_ids: list[int],
    generator: torch.Generator | None,
    allowed: torch.Tensor | None = None,
    temperature: float | None = None,
) -> int:
    """Pick the next token: argmax for greedy (or temperature 0), else a seeded draw."""
    temp = config.temperature if temperature is None else temperature
    greedy = config.strategy == "greedy" or temp == 0
    if greedy:
        out = apply_repetition_penalty(apply_mask(logits.float(), allowed), previous_ids, config.repetition_penalty)
        return int(torch.argmax(out).item())
    out = processed_logits(logits, config, previous_ids, allowed, temperature=temp)
    probs = torch.softmax(out, dim=-1)
    if not torch.isfinite(probs).all() or float(probs.sum()) <= 0:
        raise RuntimeError("no token is allowed at this point (the grammar mask removed every token)")
    return int(torch.multinomial(probs, 1, generator=generator).item())
