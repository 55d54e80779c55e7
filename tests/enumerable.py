"""A response space small enough to enumerate: a few allowed tokens, a fixed length, EOS allowed or not.

`ChoiceConstraint` is a real ResponseConstraint (the decoder's interface) over token ids; `exact_power`
computes p(x)^alpha over every response it allows, normalised, from fresh full forward passes.
Used by tests/test_power_sampling.py and bench/gradient.py.
"""

from __future__ import annotations

import itertools
import math

import torch

from agent.decoding.constraint import Step
from agent.decoding.scoring import sequence_logprobs
from agent.model.runtime import LoadedModel
from agent.tooling.records import PendingCall, ToolCallRecord

Response = tuple[tuple[int, ...], bool]  # (tokens, ended with EOS)


class ChoiceConstraint:
    """Exactly `length` tokens from `choices`, or (allow_eos) fewer followed by end-of-sequence."""

    def __init__(self, choices: list[int], length: int, width: int, eos_ids: set[int], allow_eos: bool) -> None:
        self.choices = list(choices)
        self.length = length
        self.width = width
        self.eos_ids = sorted(eos_ids)
        self.allow_eos = allow_eos
        self.count = 0

    def allowed_tokens(self) -> torch.Tensor:
        mask = torch.zeros(self.width, dtype=torch.bool)
        if self.count < self.length:
            mask[self.choices] = True
        if self.allow_eos or self.count >= self.length:
            mask[self.eos_ids] = True
        return mask

    def accept(self, token_id: int) -> Step:
        if self.count >= self.length or token_id not in self.choices:
            raise ValueError(f"token {token_id} is not allowed after {self.count} tokens")
        self.count += 1
        return Step()

    def is_finished(self) -> bool:
        return self.count >= self.length

    def fork(self) -> ChoiceConstraint:
        copy = ChoiceConstraint(self.choices, self.length, self.width, set(self.eos_ids), self.allow_eos)
        copy.count = self.count
        return copy

    def set_tokens_left(self, n: int) -> None:
        """The length is fixed by the constraint itself."""

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return []

    @property
    def pending_call(self) -> PendingCall | None:
        return None

    def run_pending(self) -> Step:
        raise RuntimeError("no tool calls in this constraint")

    @property
    def grammar_hash(self) -> str:
        return f"choices:{self.choices}:{self.length}:{self.allow_eos}"


def responses(choices: list[int], length: int, allow_eos: bool) -> list[Response]:
    """Every response the constraint allows."""
    found: list[Response] = [(tuple(ids), False) for ids in itertools.product(choices, repeat=length)]
    if allow_eos:
        for n in range(length):
            found += [(tuple(ids), True) for ids in itertools.product(choices, repeat=n)]
    return found


def exact_power(lm: LoadedModel, prompt_ids: list[int], choices: list[int], length: int, allow_eos: bool,
                alpha: float) -> dict[Response, float]:
    """p(x)^alpha normalised over every allowed response (log p from a fresh full forward pass each)."""
    eos = min(lm.eos_token_ids)
    logs: dict[Response, float] = {}
    for ids, ended in responses(choices, length, allow_eos):
        lps, eos_lp = sequence_logprobs(lm, prompt_ids, list(ids), eos_id=eos if ended else None)
        logs[(ids, ended)] = alpha * (sum(lps) + (eos_lp or 0.0))
    top = max(logs.values())
    weights = {key: math.exp(value - top) for key, value in logs.items()}
    total = sum(weights.values())
    return {key: w / total for key, w in weights.items()}


def total_variation(target: dict[Response, float], counts: dict[Response, int]) -> float:
    """Half the L1 distance between the target and the empirical distribution of `counts`."""
    n = sum(counts.values())
    keys = set(target) | set(counts)
    return 0.5 * sum(abs(target.get(k, 0.0) - counts.get(k, 0) / n) for k in keys)
