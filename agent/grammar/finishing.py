"""Finishing in time: every response must parse, even when the token budget runs out.

Two parts. Before a call opens: `call_reserve` bounds the tokens a call of a tool needs, and no
call may open with fewer tokens left than the largest bound (`open_reserve`). After: near the
limit an open call (or an unfinished user-grammar response) is steered to its shortest
completion (`FinishSteering`), estimated by rolling a simple closing policy forward on a copy
of the matcher.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from llguidance import LLMatcher

from agent.grammar.islands import ISLAND_PREFIX
from agent.grammar.protocol import value_json
from agent.grammar.tokenizer import TokenizerInfo
from agent.grammar.values import minimal_value
from agent.tooling.spec import Param, ToolSpec

ISLAND_OPEN = ISLAND_PREFIX.encode()
FINISH_WINDOW = 40  # start estimating the distance to a complete response this close to the limit
ROLLOUT_LIMIT = 30  # give up estimating after this many steps
# One free token can lengthen the way to a finish by at most this much (a `\\u` escape, a
# multi-byte character started in a string), so steering starts this many tokens early.
FINISH_MARGIN = 8
# Tokens tried (in this order) when steering to a quick finish: close strings, containers, calls;
# the last ones complete a multi-byte UTF-8 character left open by a byte-level token. "1" before "0":
# a bounded negative number (a JSON Schema `minimum`) cannot end as -0.000..., so zeros never finish it.
FINISH_PIECES = [b'")', b'"', b"}", b"]", b")", b"1", b"0", b":", b",", b".", b"f", b"n", b"\n",
                 b"\x90", b"\x80", b"\xa0"]


def _min_value_len(param: Param) -> int:
    kind = param.type.kind
    if kind == "str":
        return 2
    if kind in ("int", "float"):
        return 1
    if kind == "bool":
        return 5
    if kind == "list":
        return 2
    # an enum's longest choice; an object's required keys with such values (an upper bound)
    return len(value_json(minimal_value(param.type, longest_choice=True)))


def call_reserve(spec: ToolSpec) -> int:
    """An upper bound on the tokens needed to open and finish a call of this tool."""
    required = sum(4 + len(p.name) + _min_value_len(p) for p in spec.params if p.required)
    optional = max((4 + len(p.name) + _min_value_len(p) for p in spec.params if not p.required), default=0)
    return len("CALL(") + len(spec.name) + required + optional + 2


def open_reserve(specs: Iterable[ToolSpec]) -> int:
    """No call may open with fewer tokens left than this (the costliest call, plus the steering margin)."""
    return max((call_reserve(s) for s in specs), default=0) + FINISH_MARGIN + 2


@dataclass
class FinishSteering:
    """Steers a response that cannot finish yet to its shortest completion near the token limit."""

    finish_ids: list[int]  # FINISH_PIECES this tokenizer spells as one token, in order
    lengths: np.ndarray  # bytes per token (the last resort: the longest allowed token)
    protocol: bool  # the tool protocol (a call is done when its island opens), not a user grammar
    by_bytes: dict[bytes, int]  # the first token id spelling exactly these bytes

    @classmethod
    def for_tokenizer(cls, info: TokenizerInfo, protocol: bool, extra: Iterable[bytes] = ()) -> FinishSteering:
        """The steering for this tokenizer: FINISH_PIECES, then the `extra` pieces, that it spells as one token."""
        ids = [info.by_bytes[p] for p in [*FINISH_PIECES, *extra] if p in info.by_bytes]
        return cls(finish_ids=ids, lengths=info.lengths, protocol=protocol, by_bytes=info.by_bytes)

    def forced_token(self, matcher: LLMatcher) -> int | None:
        """The longest token spelling the start of the text the grammar forces here (`="` after a
        parameter's name), or None when nothing is forced. llguidance's own forced tokens are empty
        wherever the forced text can be split more than one way, and the text is forced all the same."""
        forced = matcher.compute_ff_tokens()
        if forced:
            return forced[0]
        text = matcher.compute_ff_bytes()
        for end in range(len(text), 0, -1):
            token = self.by_bytes.get(text[:end])
            if token is not None and matcher.validate_tokens([token]) == 1:
                return token
        return None

    def done(self, matcher: LLMatcher) -> bool:
        if matcher.is_accepting():
            return True
        return self.protocol and matcher.compute_ff_bytes().startswith(ISLAND_OPEN)

    def distance(self, matcher: LLMatcher, limit: int = ROLLOUT_LIMIT) -> int:
        """Tokens a simple closing policy needs from this matcher state (consumed: pass a copy).

        The policy: a piece that finishes at once if there is one, else the first piece that fits,
        else the text the grammar forces.
        """
        for steps in range(limit):
            if self.done(matcher):
                return steps
            first = -1
            for tid in self.finish_ids:
                if matcher.try_consume_tokens([tid]) == 1:
                    if self.done(matcher):
                        return steps + 1
                    matcher.rollback(1)
                    if first < 0:
                        first = tid
            if first >= 0:
                matcher.consume_token(first)
            else:
                forced = self.forced_token(matcher)
                if forced is None or matcher.try_consume_tokens([forced]) != 1:
                    return limit
        return limit

    def steer(self, matcher: LLMatcher, mask: np.ndarray, tokens_left: int) -> np.ndarray:
        """Near the limit and not finishable yet: allow only the token with the shortest way to a finish."""
        here = self.distance(matcher.deep_copy())
        if tokens_left > here + FINISH_MARGIN:
            return mask
        best, best_distance = -1, ROLLOUT_LIMIT + 1
        for tid in self.finish_ids:
            if tid < mask.size and mask[tid]:
                branch = matcher.deep_copy()
                if branch.try_consume_tokens([tid]) != 1:
                    continue
                d = self.distance(branch)
                if d < best_distance:
                    best, best_distance = tid, d
        if best < 0:
            forced = self.forced_token(matcher)
            if forced is not None and forced < mask.size and mask[forced]:
                best = forced
            else:
                best = int(np.argmax(np.where(mask, self.lengths, -1)))
        out = np.zeros_like(mask)
        out[best] = True
        return out
