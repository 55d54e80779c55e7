"""Strategies `greedy` and `sample`: one pass of the decode loop (agent.decoding.decode).

They stream: each piece of text goes to `on_token` as it is decoded, and the session's PrefixCache
lets the next turn reuse this one's KV. Their one response is scored like every other strategy's.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.decode import decode
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.loop_guard import model_text
from agent.decoding.progress import ProgressSink
from agent.decoding.results import Candidate, SearchResult
from agent.decoding.scoring import score_parts
from agent.model.backend import ModelBackend


class SinglePass:
    """A strategy of one sequence: `greedy` (argmax) or `sample` (DecodeConfig's sampling settings)."""

    streams_tokens = True
    explores_branches = False

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig, *,
            make_constraint: Callable[[], ResponseConstraint | None] | None = None,
            should_stop: Callable[[], bool] | None = None, on_token: Callable[[str], None] | None = None,
            prefix_cache: PrefixCache | None = None, on_progress: ProgressSink | None = None) -> SearchResult:
        # on_progress is not used: the text itself streams to on_token as it is decoded
        constraint = make_constraint() if make_constraint is not None else None
        decoded = decode(lm, prompt_ids, config, constraint=constraint, on_token=on_token,
                         prefix_cache=prefix_cache, should_stop=should_stop)
        parts = score_parts(decoded.logprobs, decoded.island_mask, decoded.token_ids,
                            eos_logprob=decoded.eos_logprob, text=decoded.text,
                            loop_text=model_text(lm.tokenizer, decoded.token_ids, decoded.island_mask))
        candidate = Candidate.from_decode(decoded, parts, self.name, constraint)
        return SearchResult(best=candidate, candidates=[candidate], forward_passes=decoded.forward_passes,
                            seconds=decoded.seconds, strategy=self.name, token_evaluations=decoded.new_tokens,
                            prompt_tokens=decoded.prompt_tokens, reused_prompt_tokens=decoded.reused_prompt_tokens)
