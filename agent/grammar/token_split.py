"""Forced text is written in whole tokens.

Where the grammar forces the next bytes (a JSON key and its `": "`, the `", "` between arguments, a
tool's name), the model was trained on those bytes as the tokenizer splits them. A token that ends
strictly inside the first of those tokens (a bare " " where the tokenizer writes ' "') is a split
the model has never seen, and what it writes after one is noise: SmolLM2 in the Hermes form,
greedy, preferred ' {"' after `"expr":`, the grammar refused it, the next best allowed token was " "
(-2.07), and the string that followed opened with `}}` (-14.0). Such tokens are masked out, unless
that would leave nothing allowed.
"""

from __future__ import annotations

import numpy as np
from llguidance import LLMatcher

from agent.grammar.tokenizer import TokenizerInfo


def split_forced_tokens(info: TokenizerInfo, forced: bytes) -> list[int]:
    """Tokens spelling a proper prefix of the first token of `forced` as the tokenizer splits it."""
    if len(forced) < 2:
        return []
    first = info.ll.tokenize_bytes(forced)[:1]
    head = info.token_bytes[first[0]] if first and first[0] < len(info.token_bytes) else b""
    if not forced.startswith(head):  # a special token or a byte fallback: nothing to say
        return []
    return [tid for size in range(1, len(head)) if (tid := info.by_bytes.get(head[:size])) is not None]


def mask_split_forced(info: TokenizerInfo, matcher: LLMatcher, mask: np.ndarray) -> np.ndarray:
    """`mask` without the tokens that would split the grammar's forced bytes mid-token."""
    split = [tid for tid in split_forced_tokens(info, matcher.compute_ff_bytes()) if tid < mask.size and mask[tid]]
    if not split:
        return mask
    out = mask.copy()
    out[split] = False
    return out if out.any() else mask
