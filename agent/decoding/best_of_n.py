"""Strategy `best-of-n`: config.num_samples independent samples, ranked by the exact shared score.

The samples advance in lockstep on the tree search's shared KV (one forward pass per step for all
of them), drawn with the decode loop's sampling math (temperature, top-k, top-p, min-p) under the
grammar mask. Their log-probs are exact (the same numbers a fresh forward pass gives, see
tests/test_scoring.py), so ranking them by agent.decoding.scoring is the exact rescoring.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.progress import ProgressSink
from agent.decoding.results import SearchResult
from agent.decoding.sampling import choose_token
from agent.decoding.token_tree import Node, TokenTree
from agent.model.backend import ModelBackend

# A sample that steps into a loop redraws (the looping token is remembered) at most this often.
MAX_REDRAWS = 3


def best_of_n(
    lm: ModelBackend,
    prompt_ids: list[int],
    config: DecodeConfig,
    *,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: ProgressSink | None = None,
    prefix_cache: PrefixCache | None = None,
) -> SearchResult:
    """config.num_samples samples in lockstep within config.search_budget forward passes, ranked."""
    count = max(1, config.num_samples)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    tree = TokenTree.open(lm, prompt_ids, config, make_constraint, on_progress, prefix_cache)
    live: list[Node] = [tree.root] * count
    finished: list[Node] = []
    try:
        while live and not tree.spent() and not tree.stop_requested(should_stop):
            grown: list[Node] = []
            for node in live:
                for _ in range(MAX_REDRAWS + 1):
                    # Samples that drew the same token share the child: the tree holds each prefix once.
                    token = _sample(tree, node, config, generator)
                    if token is None:
                        break
                    child = node.children.get(token) or tree.grow(node, token)
                    if child.status != "dead":
                        break
                else:
                    continue
                if token is None or child.status == "dead":
                    continue
                if child.status == "complete":
                    finished.append(child)
                else:
                    grown.append(child)
            pending = list(dict.fromkeys(n for n in grown + finished if tree.needs_evaluation(n)))
            tree.evaluate(pending)
            # Cut short by Ctrl-C, the samples end where they are (their tokens are scored).
            live = grown if tree.interrupted else [n for n in grown if n.status == "open"]
    except KeyboardInterrupt:  # Ctrl-C between forward passes: the samples as they stand
        tree.interrupted = True
    # Nothing finished within the budget: the unfinished samples are all there is.
    unfinished = [] if finished else [n for n in dict.fromkeys(live) if n is not tree.root]
    return tree.result("best-of-n", list(dict.fromkeys(finished)), unfinished, interrupted=tree.interrupted)


def _sample(tree: TokenTree, node: Node, config: DecodeConfig, generator: torch.Generator) -> int | None:
    """One draw from the node's distribution; unlike the tree, samples may repeat tokens already tried."""
    assert node.next_logprobs is not None  # only evaluated nodes are sampled from
    mask = node.allowed
    dead = [t for t, c in node.children.items() if c.status == "dead"]
    if dead:
        mask = (mask.clone() if mask is not None else torch.ones_like(node.next_logprobs, dtype=torch.bool))
        mask[torch.tensor(dead, dtype=torch.long, device=mask.device)] = False
        if not bool(mask.any()):
            return None
    try:
        return choose_token(node.next_logprobs, config.replace(strategy="sample"), [], generator, mask)
    except RuntimeError:
        return None
