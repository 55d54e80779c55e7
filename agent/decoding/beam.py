"""Strategy `beam` (width config.beam_width): the classic baseline, on the tree search's shared KV.

Each step keeps the `beam_width` best continuations by summed log-prob (all rows have the same
number of model tokens, so sum and mean rank alike); a beam that ends (EOS, grammar end, length)
joins the finished hypotheses, and the search stops once there are `beam_width` of them (HF's
early_stopping=True). Finished hypotheses are then ranked by the shared score (agent.decoding.scoring), so
with width 1 this is exactly greedy decoding. One forward pass per step, the batch is the beam.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.progress import ProgressSink
from agent.decoding.results import SearchResult
from agent.decoding.token_tree import Node, TokenTree
from agent.model.backend import ModelBackend


def beam_search(
    lm: ModelBackend,
    prompt_ids: list[int],
    config: DecodeConfig,
    *,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: ProgressSink | None = None,
    prefix_cache: PrefixCache | None = None,
) -> SearchResult:
    """Beam search of width config.beam_width within config.search_budget forward passes."""
    width = max(1, config.beam_width)
    tree = TokenTree.open(lm, prompt_ids, config, make_constraint, on_progress, prefix_cache)
    beams: list[Node] = [tree.root]
    finished: list[Node] = []
    try:
        while beams and not tree.spent() and not tree.stop_requested(should_stop):
            proposals: list[tuple[float, int, Node, int]] = []
            for index, beam in enumerate(beams):
                mask = tree.offer_mask(beam)
                assert beam.next_logprobs is not None  # beams are evaluated nodes
                scores = beam.next_logprobs.masked_fill(~mask, float("-inf"))
                k = min(2 * width, int(mask.sum()))
                if k == 0:
                    continue
                top = torch.topk(scores, k)
                for lp, token in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                    proposals.append((beam.sum_logprob + lp, index, beam, int(token)))
            proposals.sort(key=lambda p: (-p[0], p[1]))
            survivors: list[Node] = []
            for _, _, beam, token in proposals:
                if len(survivors) >= width:
                    break
                child = tree.grow(beam, token)
                if child.status == "complete":
                    finished.append(child)
                elif child.status != "dead":
                    survivors.append(child)
            if len(finished) >= width:
                break
            pending = survivors + [n for n in finished if n.pending_logprobs]
            tree.evaluate(pending)
            # Cut short by Ctrl-C, the survivors are still the beams (their tokens are scored).
            beams = survivors if tree.interrupted else [b for b in survivors if b.status == "open"]
    except KeyboardInterrupt:  # Ctrl-C between forward passes: the beams as they stand
        tree.interrupted = True
    # Nothing finished within the budget: the unfinished beams are all there is.
    unfinished = [] if finished else [n for n in beams if n is not tree.root]
    return tree.result("beam", finished, unfinished, interrupted=tree.interrupted)
