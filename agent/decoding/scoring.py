"""The one scoring function every strategy shares (greedy, sample, beam, best-of-N, tree, tree+grad).

Length treatment: a response's score is the **mean log-probability per model token**. Model tokens
are the tokens the model generated itself; hard islands (tool results) are excluded, since the model
never chose them. When the response ended because the model chose end-of-sequence, that EOS counts
as one more model token: stopping is a decision of the model, and scoring it keeps a search from
cutting a sentence short for free. The mean (rather than the sum) keeps long answers from losing
to short ones only because they are long.

Guards: an empty response (no model token, or only whitespace) and a degenerate one (it loops,
exactly or with small edits: agent.decoding.loop_guard) are not excluded but ranked below every
normal response: their score is pushed down by `DEGENERATE_PENALTY` nats per token, far more than any
plausible mean (a uniform draw over 10^6 tokens is only -13.8). Scores therefore stay finite and
JSON-safe, and every strategy ranks by one number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agent.decoding import loop_guard
from agent.model.runtime import LoadedModel

DEGENERATE_PENALTY = 100.0
EMPTY_SCORE = -2 * DEGENERATE_PENALTY
# tail_loop/has_loop: a block of `period` tokens repeated back to back, at least MIN_REPEATS times
# over at least MIN_LOOP_SPAN tokens. Only MCMC's token moves still use it; the shared score and the
# token tree use agent.decoding.loop_guard, which also catches repeats with small edits and lets a
# long number or a wide table's separator row ("|---|---|---|---|") through.
MAX_LOOP_PERIOD = 16
MIN_REPEATS = 3
MIN_LOOP_SPAN = 8


@dataclass(frozen=True)
class ScoreParts:
    """A response's score and what it is made of (for /alts, the store and the bench)."""

    value: float  # what strategies rank by (mean log-prob per model token, guards applied)
    total_logprob: float  # sum of the model tokens' log-probabilities (EOS included if it ended)
    model_tokens: int  # tokens counted in the mean
    empty: bool
    degenerate: bool

    @property
    def mean_logprob(self) -> float:
        return self.total_logprob / self.model_tokens if self.model_tokens else 0.0


def tail_loop(ids: Sequence[int]) -> bool:
    """True when the sequence ends in a block repeated back to back (checked as a branch grows)."""
    n = len(ids)
    for period in range(1, MAX_LOOP_PERIOD + 1):
        repeats_needed = max(MIN_REPEATS, -(-MIN_LOOP_SPAN // period))
        span = repeats_needed * period
        if span > n:
            continue
        tail = ids[n - span:]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return True
    return False


def has_loop(ids: Sequence[int]) -> bool:
    """True when any prefix of the sequence ends in a loop (see tail_loop)."""
    ids = list(ids)
    return any(tail_loop(ids[:end]) for end in range(MIN_LOOP_SPAN, len(ids) + 1))


def model_token_ids(token_ids: Sequence[int], island_mask: Sequence[bool]) -> list[int]:
    """The tokens the model produced itself (islands removed)."""
    if len(token_ids) != len(island_mask):
        raise ValueError(f"token_ids ({len(token_ids)}) and island_mask ({len(island_mask)}) differ in length")
    return [t for t, island in zip(token_ids, island_mask, strict=False) if not island]


def score_parts(
    logprobs: Sequence[float],
    island_mask: Sequence[bool],
    token_ids: Sequence[int],
    *,
    eos_logprob: float | None = None,
    text: str | None = None,
    loop_text: str | None = None,
) -> ScoreParts:
    """Score a response from per-token log-probs (0.0 or anything at islands: they are skipped).

    eos_logprob: log p(EOS) after the last token when the response ended with EOS, else None.
    text: the decoded response, to catch whitespace-only answers and loops (optional).
    loop_text: the text of the model's own tokens (agent.decoding.loop_guard.model_text), read by the
    loop guard instead of `text` when the response holds islands (a tool result is not a loop).
    Without either text no loop is looked for.
    """
    if not (len(logprobs) == len(island_mask) == len(token_ids)):
        raise ValueError(
            f"logprobs ({len(logprobs)}), island_mask ({len(island_mask)}) and token_ids "
            f"({len(token_ids)}) must have the same length"
        )
    own = [lp for lp, island in zip(logprobs, island_mask, strict=False) if not island]
    total = float(sum(own))
    count = len(own)
    if eos_logprob is not None:
        total += float(eos_logprob)
        count += 1
    empty = not own or (text is not None and not text.strip())
    guarded = loop_text if loop_text is not None else text
    degenerate = not empty and guarded is not None and loop_guard.has_loop(guarded)
    if empty:
        value = EMPTY_SCORE
    else:
        value = total / count - (DEGENERATE_PENALTY if degenerate else 0.0)
    return ScoreParts(value=value, total_logprob=total, model_tokens=count, empty=empty, degenerate=degenerate)


def sequence_logprobs(
    lm: LoadedModel, prompt_ids: Sequence[int], token_ids: Sequence[int], *, eos_id: int | None = None
) -> tuple[list[float], float | None]:
    """Exact log p of every response token (and of eos_id after it, if given) in one full forward pass.

    Nothing is cached: this is the reference the incremental scores of the searches are checked against.
    """
    if not prompt_ids:
        raise ValueError("the prompt is empty: a response can only be scored given at least one prompt token")
    ids = list(prompt_ids) + list(token_ids)
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    start = len(prompt_ids) - 1
    positions = torch.arange(start, start + len(token_ids), device=logp.device)
    targets = torch.tensor(list(token_ids), dtype=torch.long, device=logp.device)
    lps = logp[positions, targets].tolist() if token_ids else []
    eos_lp = float(logp[len(ids) - 1, eos_id]) if eos_id is not None else None
    return lps, eos_lp


def score_sequence(
    lm: LoadedModel,
    prompt_ids: Sequence[int],
    token_ids: Sequence[int],
    island_mask: Sequence[bool],
    *,
    eos_id: int | None = None,
    text: str | None = None,
) -> float:
    """The shared score of a response, from one fresh full forward pass (islands excluded)."""
    return score_sequence_parts(lm, prompt_ids, token_ids, island_mask, eos_id=eos_id, text=text).value


def score_sequence_parts(
    lm: LoadedModel,
    prompt_ids: Sequence[int],
    token_ids: Sequence[int],
    island_mask: Sequence[bool],
    *,
    eos_id: int | None = None,
    text: str | None = None,
) -> ScoreParts:
    """Like score_sequence, with the parts (total, token count, guards)."""
    lps, eos_lp = sequence_logprobs(lm, prompt_ids, token_ids, eos_id=eos_id)
    own_text = loop_guard.model_text(lm.tokenizer, token_ids, island_mask)
    return score_parts(lps, island_mask, token_ids, eos_logprob=eos_lp, text=text, loop_text=own_text)
