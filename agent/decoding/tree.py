"""Strategy `tree`: a backtracking search over continuations, on the token tree's shared KV.

The tree (agent.decoding.token_tree) holds every prefix once; the search decides which nodes grow.
The search (a beam-stack search: beam search that remembers what it passed over and backtracks):
1. A dive grows the tree layer by layer from a set of start nodes, keeping the `beam_width` best
   continuations by mean log-prob (one forward pass per layer); every proposal it passes over is
   pushed on the stack of alternatives. The first dive starts at the root and is cold: beam search,
   except that it does not stop at `beam_width` finished answers while an open beam's running mean
   is still above theirs (beam search's early stop can drop its best path, even the greedy one).
   What follows can only add candidates.
2. Backtracking: while budget (forward passes) is left, the `beam_width` most promising
   alternatives are grown and a new dive starts from them. Promise is the mean the branch would
   end with if it went on as well as the best answer so far; the choice among alternatives is
   annealed: Gumbel noise scaled by a temperature that cools geometrically from
   config.temperature to COOL_FRACTION of it over the backtracking budget (simulated annealing:
   far-flung restarts early, the best-looking ones late), and the dives draw their proposals at
   that temperature too.
3. Dead ends are remembered and never grown again: grammar rejection (nothing allowed, a refused
   token, cut off where the grammar cannot end), loops (agent.decoding.scoring.tail_loop) and alternatives
   whose promise falls PRUNE_MARGIN below the K-th best complete answer. Each (node, token) is
   grown at most once (the node's `tried` set). The search ends early (converged) when no
   alternative promises more than the best answer's mean minus CONVERGED_MARGIN.
4. The best `top_candidates` complete answers come back, ranked by the shared score.
Tool calls: each branch forks the grammar state (llguidance deep copy); pure tools run on the
branch (the constraint's runner caches them by arguments); with defer_side_effects a side-effect
call ends its branch as "pending" and agent.decoding.search runs it only on the chosen answer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.progress import ProgressSink
from agent.decoding.results import SearchResult
from agent.decoding.sampling import processed_logits
from agent.decoding.token_tree import Node, TokenTree
from agent.model.backend import ModelBackend

# Alternatives whose promise falls this far (nats/token) below the K-th best complete candidate are
# dead ends. The mean is not monotone along a path, so this bound is a heuristic, kept loose.
PRUNE_MARGIN = 1.0
# The search stops early (converged) once no alternative promises more than the best complete
# answer's mean minus this margin (nats/token): confident answers do not spend the whole budget.
CONVERGED_MARGIN = 0.25
# The annealing schedule ends at this fraction of the starting temperature.
COOL_FRACTION = 0.05


def temperature_at(config: DecodeConfig, progress: float) -> float:
    """Annealing: config.temperature at the start, cooling geometrically to COOL_FRACTION of it."""
    hot = config.temperature
    if hot <= 0:
        return 0.0
    progress = min(max(progress, 0.0), 1.0)
    return hot * (COOL_FRACTION ** progress)


@dataclass(order=True)
class Alternative:
    """A branch a dive passed over (the beam stack): where to backtrack to."""

    key: float
    tiebreak: int
    node: Node = field(compare=False)
    token: int = field(compare=False)
    logprob: float = field(compare=False)


def draw_tokens(tree: TokenTree, node: Node, temperature: float, generator: torch.Generator,
                count: int = 1) -> list[int]:
    """Up to `count` distinct untried tokens the node offers next.

    Sampled without replacement at the temperature (Gumbel-top-k over the tempered, truncated
    logits); when cold, simply the most likely ones.
    """
    mask = tree.offer_mask(node)
    available = int(mask.sum())
    if available == 0:
        return []
    count = min(count, available)
    logits = node.next_logprobs
    assert logits is not None  # only evaluated nodes offer tokens
    if temperature <= 1e-3:
        keys = logits.masked_fill(~mask, float("-inf"))
    else:
        keys = processed_logits(logits, tree.config, [], mask, temperature=temperature)
        if not bool(torch.isfinite(keys).any()):
            keys = logits.masked_fill(~mask, float("-inf"))
        else:
            uniform = torch.rand(keys.shape, generator=generator).clamp_(1e-12, 1.0).to(keys.device)
            keys = keys - torch.log(-torch.log(uniform))
    top = torch.topk(keys, count)
    return [int(t) for t, v in zip(top.indices.tolist(), top.values.tolist(), strict=True) if v != float("-inf")]


def tree_search(
    lm: ModelBackend,
    prompt_ids: list[int],
    config: DecodeConfig,
    *,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: ProgressSink | None = None,
    prefix_cache: PrefixCache | None = None,
) -> SearchResult:
    """Backtracking best-first search within config.search_budget forward passes; best top_candidates back."""
    budget = config.search_budget
    width = max(1, config.beam_width)
    keep = max(1, config.top_candidates)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    tree = TokenTree.open(lm, prompt_ids, config, make_constraint, on_progress, prefix_cache)
    complete: list[Node] = []
    passed_over: list[Alternative] = []
    order = itertools.count()

    def stopped() -> bool:
        return tree.stop_requested(should_stop) or tree.spent()

    def dive(starts: list[Node], temperature: float, width: int = width) -> None:
        """Layer by layer from `starts`: keep the `width` best continuations, stack the rest.

        Once `width` answers have finished, a beam goes on only while its running mean is above
        the width-th best of them: stopping outright (beam search's early stop) would drop an
        open beam better than every finished one, and nothing would ever grow it again.
        """
        beams = [n for n in starts if n.status == "open"]
        finished: list[float] = []
        while beams and not stopped():
            if len(finished) >= width:
                floor = sorted(finished, reverse=True)[width - 1]
                beams = [b for b in beams if b.mean > floor]
                if not beams:
                    break
            proposals: list[tuple[float, int, Node, int, float]] = []
            for beam in beams:
                for token in draw_tokens(tree, beam, temperature, generator, 2 * width):
                    lp = tree.token_logprob(beam, token)
                    key = (beam.sum_logprob + lp) / (beam.model_tokens + 1)
                    proposals.append((key, next(order), beam, token, lp))
            proposals.sort(key=lambda p: (-p[0], p[1]))
            survivors: list[Node] = []
            for key, tie, beam, token, lp in proposals:
                if len(survivors) >= width:
                    passed_over.append(Alternative(-key, tie, beam, token, lp))
                    continue
                child = tree.grow(beam, token)
                if child.status == "complete":
                    complete.append(child)
                    finished.append(key)
                elif child.status != "dead":
                    survivors.append(child)
            tree.evaluate([n for n in survivors if tree.needs_evaluation(n)]
                          + [n for n in complete if n.pending_logprobs])
            beams = [n for n in survivors if n.status == "open"]

    def estimate(alt: Alternative, best: Node) -> float:
        """Final mean if the branch, after this token, went on as well as the best answer so far."""
        done = alt.node.model_tokens + 1
        if alt.token in tree.eos_ids:
            return (alt.node.sum_logprob + alt.logprob) / done
        missing = max(best.model_tokens - done, 0)
        return (alt.node.sum_logprob + alt.logprob + missing * best.mean) / (done + missing)

    try:
        # The first dive is the cold limit of the search: exactly a beam of width beam_width. Under a
        # wall-clock limit it is one beam wide (greedy), so that an answer exists as early as possible
        # (a wide first dive ran out of time unfinished on most prompts at 3x greedy's seconds).
        dive([tree.root], 0.0, 1 if config.time_limit > 0 else width)
        first_passes = tree.forward_passes
        while not stopped() and passed_over:
            if not complete:
                break
            left = budget - tree.forward_passes
            progress = (tree.forward_passes - first_passes) / max(1, budget - first_passes)
            progress = max(progress, tree.deadline.fraction())  # cools by whichever limit comes first
            temperature = temperature_at(config, progress)
            scores = sorted((n.mean for n in complete), reverse=True)
            prune_below = scores[min(keep, len(scores)) - 1] - PRUNE_MARGIN
            best = max(complete, key=lambda n: n.mean)  # once per round: not once per alternative
            typical = best.model_tokens
            ranked_alts: list[tuple[float, Alternative]] = []
            kept: list[Alternative] = []
            best_promise = -math.inf
            for alt in passed_over:
                if alt.node.status != "open" or alt.token in alt.node.tried:
                    continue
                value = estimate(alt, best)
                if value < prune_below:
                    # Below the pruning bound: a dead end, remembered and never grown.
                    alt.node.tried.add(alt.token)
                    tree.dead[alt.node.path_tokens() + (alt.token,)] = "below bound"
                    continue
                kept.append(alt)
                best_promise = max(best_promise, value)
                if typical - alt.node.model_tokens > left and alt.token not in tree.eos_ids:
                    continue  # too deep a detour to finish with the passes left
                ranked_alts.append((value, alt))
            passed_over = kept
            if temperature > 1e-3 and ranked_alts:
                # Annealing: the hotter, the more the choice of where to backtrack is a random draw
                # (Gumbel noise, drawn for all alternatives at once: one draw each cost more than the pass).
                uniform = torch.rand(len(ranked_alts), generator=generator, dtype=torch.float64).clamp_(1e-12, 1.0)
                noise = (-torch.log(-torch.log(uniform)) * (temperature / max(1, typical))).tolist()
                ranked_alts = [(value + n, alt) for (value, alt), n in zip(ranked_alts, noise, strict=True)]
            if not ranked_alts or best_promise < scores[0] - CONVERGED_MARGIN:
                break  # nothing left that could plausibly beat the best answer: converged
            ranked_alts.sort(key=lambda pair: -pair[0])
            starts: list[Node] = []
            chosen = {id(alt) for _, alt in ranked_alts[:width]}
            passed_over = [alt for alt in passed_over if id(alt) not in chosen]
            for _, alt in ranked_alts[:width]:
                child = tree.grow(alt.node, alt.token)
                if child.status == "complete":
                    complete.append(child)
                elif child.status != "dead":
                    starts.append(child)
            pending = [n for n in starts if tree.needs_evaluation(n)] + [n for n in complete if n.pending_logprobs]
            if pending:
                if stopped():
                    break
                tree.evaluate(pending)
            dive(starts, temperature)
    except KeyboardInterrupt:  # Ctrl-C between forward passes: what the tree holds so far
        tree.interrupted = True
    ranked_complete = sorted(complete, key=lambda n: -n.mean)
    # When the budget ran out first, the deepest, best unfinished branches fill up the candidates.
    # (Cut short by Ctrl-C, the nodes of the interrupted pass count too: their tokens are scored.)
    partial = [n for n in tree.evaluated + tree.unevaluated if n.parent is not None and n.status in ("open", "new")]
    partial.sort(key=lambda n: (-n.model_tokens, -n.mean))
    return tree.result("tree", ranked_complete, partial[: max(0, keep - len(ranked_complete))],
                       interrupted=tree.interrupted, keep=keep)
