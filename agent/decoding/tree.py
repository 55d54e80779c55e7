"""Strategy `tree`: a backtracking search over continuations, on one shared KV cache.

The tree: a node is one sampled token plus any tokens the constraint forced after it (a tool-result
island), and it holds the keys and values of exactly those tokens. The KV of a path is the prompt's
KV followed by its nodes' KV, so no prefix ever goes through the model twice (KV reuse ratio = token
evaluations / tree tokens = 1.0). Several nodes go through the model in one forward pass: their
paths' KV are stacked with left padding, an attention mask hides the padding and explicit position
ids keep every row at its true positions, so the scores are exact (tests/test_tree_search.py checks
them against a fresh full forward pass).

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
   token, cut off where the grammar cannot end), loops (agent.scoring.tail_loop) and alternatives
   whose promise falls PRUNE_MARGIN below the K-th best complete answer. Each (node, token) is
   grown at most once (the node's `tried` set). The search ends early (converged) when no
   alternative promises more than the best answer's mean minus CONVERGED_MARGIN.
4. The best `top_candidates` complete answers come back, ranked by the shared score.
Tool calls: each branch forks the grammar state (llguidance deep copy); pure tools run on the
branch (the constraint's runner caches them by arguments); with defer_side_effects a side-effect
call ends its branch as "pending" and agent.search runs it only on the chosen answer.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.tooling.records import ToolCallRecord
from agent.model.runtime import LoadedModel
from agent.decoding.scoring import model_token_ids, score_parts, tail_loop

# Alternatives whose promise falls this far (nats/token) below the K-th best complete candidate are
# dead ends. The mean is not monotone along a path, so this bound is a heuristic, kept loose.
PRUNE_MARGIN = 1.0
# The search stops early (converged) once no alternative promises more than the best complete
# answer's mean minus this margin (nats/token): confident answers do not spend the whole budget.
CONVERGED_MARGIN = 0.25
# The annealing schedule ends at this fraction of the starting temperature.
COOL_FRACTION = 0.05


@dataclass(eq=False)
class Node:
    """One step of a branch: a sampled token and the island tokens forced after it."""

    id: int
    parent: Node | None
    tokens: list[int]
    island: list[bool]
    logprobs: list[float]  # log p of each of this node's tokens (0.0 at islands)
    sum_logprob: float  # model tokens along the whole path
    model_tokens: int  # along the whole path
    depth: int  # response tokens along the whole path (islands included)
    constraint: Any = None
    tool_call: ToolCallRecord | None = None
    is_eos: bool = False
    eos_logprob: float | None = None
    temperature: float = 0.0  # the schedule's temperature when this node was drawn
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer [kv_heads, len(tokens), head_dim]
    next_logprobs: torch.Tensor | None = None  # [vocab] after the node's last token
    allowed: torch.Tensor | None = None  # [vocab] bool: what the grammar allows next (None = all)
    children: dict[int, Node] = field(default_factory=dict)
    tried: set[int] = field(default_factory=set)  # tokens grown already (children and dead ends)
    offered: set[int] = field(default_factory=set)  # tokens a caller holds back from draw_tokens
    status: str = "new"  # new | open | exhausted | complete | dead
    reason: str = ""  # why complete or dead
    pending_logprobs: bool = False  # forced non-island tokens whose log-probs come with evaluation

    @property
    def mean(self) -> float:
        count = self.model_tokens + (1 if self.eos_logprob is not None else 0)
        total = self.sum_logprob + (self.eos_logprob or 0.0)
        return total / count if count else 0.0

    def path(self) -> list[Node]:
        """The nodes from the root's first child down to this one."""
        nodes = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


class TokenTree:
    """Continuations of one prompt as a tree of nodes, each holding the KV of its own tokens.

    Shared by the tree search, beam search and best-of-N: they differ only in which nodes they
    ask it to grow.
    """

    def __init__(self, lm: LoadedModel, prompt_ids: list[int], config: DecodeConfig,
                 constraint: ResponseConstraint | None = None) -> None:
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        self.lm = lm
        self.prompt_ids = list(prompt_ids)
        self.config = config
        self.eos_ids = lm.eos_token_ids
        self._ids = itertools.count()
        self.root = Node(id=next(self._ids), parent=None, tokens=[], island=[], logprobs=[], sum_logprob=0.0,
                         model_tokens=0, depth=0, constraint=constraint)
        self.root.tokenizer = lm.tokenizer  # for render_tree
        self.forward_passes = 0
        self.token_evaluations = 0  # response tokens run through the model
        self.tree_tokens = 0  # response tokens held by evaluated nodes
        self.evaluated: list[Node] = []
        self.dead: dict[tuple[int, ...], str] = {}  # path of every dead end -> why
        self.stop_strings = [s for s in config.stop if s]
        pad = lm.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0

    # -- model -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the prompt once; its KV is the root of every path."""
        cache = DynamicCache()
        ids = torch.tensor([self.prompt_ids], dtype=torch.long, device=self.lm.device)
        with torch.inference_mode():
            out = self.lm.model(input_ids=ids, past_key_values=cache, use_cache=True)
        self.forward_passes += 1
        self.root.kv = [(layer.keys[0], layer.values[0]) for layer in cache.layers]
        self._finish_evaluation(self.root, out.logits[0, -1])

    def evaluate(self, nodes: list[Node]) -> None:
        """One forward pass over several nodes: each row is its path's KV plus the node's tokens."""
        if not nodes:
            return
        paths = [node.path() for node in nodes]
        past_lens = [len(self.prompt_ids) + sum(len(a.tokens) for a in path[:-1]) for path in paths]
        new_lens = [len(node.tokens) for node in nodes]
        lp, ln, rows = max(past_lens), max(new_lens), len(nodes)
        device = self.lm.device
        cache = DynamicCache()
        for layer_index, (k0, v0) in enumerate(self.root.kv):
            heads, _, dim = k0.shape
            keys = k0.new_zeros((rows, heads, lp, dim))
            values = v0.new_zeros((rows, heads, lp, dim))
            for row, path in enumerate(paths):
                ks = [k0] + [a.kv[layer_index][0] for a in path[:-1]]
                vs = [v0] + [a.kv[layer_index][1] for a in path[:-1]]
                keys[row, :, lp - past_lens[row]:] = torch.cat(ks, dim=1)
                values[row, :, lp - past_lens[row]:] = torch.cat(vs, dim=1)
            cache.update(keys, values, layer_index)
        input_ids = torch.full((rows, ln), self.pad_id, dtype=torch.long, device=device)
        positions = torch.zeros((rows, ln), dtype=torch.long, device=device)
        mask = torch.zeros((rows, lp + ln), dtype=torch.long, device=device)
        for row, node in enumerate(nodes):
            n = new_lens[row]
            input_ids[row, ln - n:] = torch.tensor(node.tokens, dtype=torch.long, device=device)
            positions[row, ln - n:] = torch.arange(past_lens[row], past_lens[row] + n, device=device)
            mask[row, lp - past_lens[row]:lp] = 1
            mask[row, lp + ln - n:] = 1
        with torch.inference_mode():
            out = self.lm.model(input_ids=input_ids, past_key_values=cache, attention_mask=mask,
                                position_ids=positions, use_cache=True)
        self.forward_passes += 1
        logits = out.logits
        for row, node in enumerate(nodes):
            n = new_lens[row]
            node.kv = [(layer.keys[row, :, lp + ln - n:].clone(), layer.values[row, :, lp + ln - n:].clone())
                       for layer in cache.layers]
            self.token_evaluations += n
            if node.pending_logprobs:
                # Forced tokens the model is scored on (grammar-forced text, not islands).
                node_lp = torch.log_softmax(logits[row, ln - n:].float(), dim=-1)
                for i in range(1, n):
                    if not node.island[i]:
                        value = float(node_lp[i - 1, node.tokens[i]])
                        node.logprobs[i] = value
                        node.sum_logprob += value
                node.pending_logprobs = False
            self._finish_evaluation(node, logits[row, -1])

    def _finish_evaluation(self, node: Node, last_logits: torch.Tensor) -> None:
        node.next_logprobs = torch.log_softmax(last_logits.float(), dim=-1)
        self.tree_tokens += len(node.tokens)
        self.evaluated.append(node)
        if node.status == "new":
            node.status = "open"
        if node.status != "open":
            return
        if node.constraint is not None:
            set_left = getattr(node.constraint, "set_tokens_left", None)
            if set_left is not None:
                set_left(self.config.max_new_tokens - node.model_tokens)
            allowed = node.constraint.allowed_tokens()
            if allowed is not None:
                allowed = allowed.to(node.next_logprobs.device)
                width = node.next_logprobs.shape[0]
                if allowed.shape[0] < width:  # logits may be wider than the tokenizer's vocabulary
                    allowed = torch.cat([allowed, allowed.new_zeros(width - allowed.shape[0])])
                node.allowed = allowed[:width]
                if not bool(node.allowed.any()):
                    self.kill(node, "grammar: nothing allowed")

    # -- growing ---------------------------------------------------------------------------------
    def kill(self, node: Node, reason: str) -> None:
        node.status = "dead"
        node.reason = reason
        node.next_logprobs = None
        node.kv = None if node.parent is not None else node.kv
        self.dead[self.path_tokens(node)] = reason

    @staticmethod
    def path_tokens(node: Node) -> tuple[int, ...]:
        out: list[int] = []
        for n in node.path():
            out.extend(n.tokens)
            if n.is_eos:
                out.append(-1)
        return tuple(out)

    def token_logprob(self, node: Node, token: int) -> float:
        assert node.next_logprobs is not None
        return float(node.next_logprobs[token])

    def offer_mask(self, node: Node) -> torch.Tensor:
        """What the node may still offer: allowed by the grammar and not tried before."""
        assert node.next_logprobs is not None
        mask = node.allowed.clone() if node.allowed is not None else torch.ones_like(node.next_logprobs,
                                                                                  dtype=torch.bool)
        if node.tried:
            mask[torch.tensor(sorted(node.tried), dtype=torch.long, device=mask.device)] = False
        return mask

    def grow(self, parent: Node, token: int, temperature: float = 0.0) -> Node:
        """Make the child of `parent` for `token` (not yet evaluated); it may be complete or dead."""
        parent.tried.add(token)
        lp = self.token_logprob(parent, token)
        child = Node(id=next(self._ids), parent=parent, tokens=[], island=[], logprobs=[],
                     sum_logprob=parent.sum_logprob, model_tokens=parent.model_tokens, depth=parent.depth,
                     temperature=temperature)
        parent.children[token] = child
        if token in self.eos_ids:
            child.is_eos = True
            child.eos_logprob = lp
            child.status, child.reason = "complete", "eos"
            return child
        child.tokens, child.island, child.logprobs = [token], [False], [lp]
        child.sum_logprob += lp
        child.model_tokens += 1
        child.depth += 1
        if parent.constraint is not None:
            child.constraint = parent.constraint.fork()
            try:
                step = child.constraint.accept(token)
            except Exception as exc:  # noqa: BLE001 (constraints raise their own types): a dead end
                self.kill(child, f"grammar: {exc}")
                return child
            if step.tool_call is not None:
                child.tool_call = step.tool_call
            if step.forced_token_ids:
                forced = list(step.forced_token_ids)
                child.tokens += forced
                child.island += [step.forced_is_island] * len(forced)
                child.logprobs += [0.0] * len(forced)
                child.depth += len(forced)
                if not step.forced_is_island:
                    child.model_tokens += len(forced)
                    child.pending_logprobs = True
        own = model_token_ids(*self.response_ids(child))
        if tail_loop(own):
            self.kill(child, "loop")
            return child
        if child.constraint is not None and getattr(child.constraint, "pending_call", None) is not None:
            child.status, child.reason = "complete", "pending call"
        elif child.constraint is not None and child.constraint.is_finished():
            child.status, child.reason = "complete", "grammar"
        elif child.model_tokens >= self.config.max_new_tokens:
            if child.constraint is not None and not self._may_end(child.constraint):
                # Cut off by the length limit where the grammar cannot end: it would not parse.
                self.kill(child, "grammar: unfinished at the length limit")
                return child
            child.status, child.reason = "complete", "length"
        elif self.stop_strings and self._hits_stop(child):
            child.status, child.reason = "complete", "stop"
        return child

    def _may_end(self, constraint: Any) -> bool:
        """Would the grammar accept the response as it stands (end-of-sequence allowed)?"""
        set_left = getattr(constraint, "set_tokens_left", None)
        if set_left is not None:
            set_left(0)
        allowed = constraint.allowed_tokens()
        if allowed is None:
            return True
        return any(0 <= e < allowed.shape[0] and bool(allowed[e]) for e in self.eos_ids)

    def _hits_stop(self, node: Node) -> bool:
        ids = self.response_ids(node)[0][-64:]
        tail = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
        return any(s in tail for s in self.stop_strings)

    def needs_evaluation(self, node: Node) -> bool:
        """Open nodes are run to get their next-token distribution; complete ones only if scores are missing."""
        return node.status == "new" or (node.status == "complete" and node.pending_logprobs)

    # -- reading out -----------------------------------------------------------------------------
    @staticmethod
    def response_ids(node: Node) -> tuple[list[int], list[bool]]:
        ids: list[int] = []
        islands: list[bool] = []
        for n in node.path():
            ids += n.tokens
            islands += n.island
        return ids, islands

    def candidate(self, node: Node, strategy: str, finish: str | None = None):  # -> agent.search.Candidate
        from agent.decoding.results import Candidate

        ids: list[int] = []
        islands: list[bool] = []
        logprobs: list[float] = []
        calls: list[ToolCallRecord] = []
        for n in node.path():
            ids += n.tokens
            islands += n.island
            logprobs += n.logprobs
            if n.tool_call is not None:
                calls.append(n.tool_call)
        text = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
        reason = finish or (node.reason if node.status == "complete" else "budget")
        if reason == "pending call":
            reason = "tool"
        if reason == "stop":
            for s in self.stop_strings:
                if s in text:
                    text = text[: text.index(s)]
                    break
        parts = score_parts(logprobs, islands, ids, eos_logprob=node.eos_logprob, text=text)
        constraint = node.constraint if node.constraint is not None or node.parent is None else (
            node.parent.constraint if node.is_eos else None)
        return Candidate(text=text, token_ids=ids, island_mask=islands, logprobs=logprobs, score=parts.value,
                         tool_calls=calls, strategy=strategy, finish_reason=reason, eos_logprob=node.eos_logprob,
                         empty=parts.empty, degenerate=parts.degenerate, node_id=node.id, constraint=constraint)

    def result(self, candidates: list, strategy: str, started: float, finish: str | None = None,
               keep: int | None = None):  # -> agent.search.SearchResult
        """The strategy's answer: candidates ranked best first (the root when none), with the tree's counts."""
        from agent.decoding.results import rank, SearchResult

        if not candidates:
            candidates = [self.candidate(self.root, strategy, finish or "budget")]
        ranked = rank(candidates)[:keep]
        return SearchResult(best=ranked[0], candidates=ranked, forward_passes=self.forward_passes, tree=self.root,
                            kv_reuse_ratio=self.kv_reuse_ratio, seconds=time.perf_counter() - started,
                            strategy=strategy, token_evaluations=self.token_evaluations)

    @property
    def kv_reuse_ratio(self) -> float:
        """Model token evaluations / tokens in the tree: 1.0 means no prefix was ever recomputed."""
        return self.token_evaluations / self.tree_tokens if self.tree_tokens else 1.0


def temperature_at(config: DecodeConfig, progress: float) -> float:
    """Annealing: config.temperature at the start, cooling geometrically to COOL_FRACTION of it."""
    hot = config.temperature
    if hot <= 0:
        return 0.0
    progress = min(max(progress, 0.0), 1.0)
    return hot * (COOL_FRACTION ** progress)


def draw_tokens(tree: TokenTree, node: Node, temperature: float, generator: torch.Generator,
                count: int = 1) -> list[int]:
    """Up to `count` distinct untried tokens the node offers next.

    Sampled without replacement at the temperature (Gumbel-top-k over the tempered, truncated
    logits); when cold, simply the most likely ones.
    """
    from agent.decoding.sampling import processed_logits

    mask = tree.offer_mask(node)
    if node.offered:
        mask[torch.tensor(sorted(node.offered), dtype=torch.long, device=mask.device)] = False
    available = int(mask.sum())
    if available == 0:
        return []
    count = min(count, available)
    logits = node.next_logprobs
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
    return [int(t) for t, v in zip(top.indices.tolist(), top.values.tolist()) if v != float("-inf")]


def draw_token(tree: TokenTree, node: Node, temperature: float, generator: torch.Generator) -> int | None:
    """One untried token the node offers (see draw_tokens), or None when every allowed one was tried."""
    tokens = draw_tokens(tree, node, temperature, generator, 1)
    return tokens[0] if tokens else None


@dataclass(order=True)
class Alternative:
    """A branch a dive passed over (the beam stack): where to backtrack to."""

    key: float
    tiebreak: int
    node: Node = field(compare=False)
    token: int = field(compare=False)
    logprob: float = field(compare=False)


def tree_search(
    lm: LoadedModel,
    prompt_ids: list[int],
    config: DecodeConfig,
    *,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
):  # -> agent.search.SearchResult
    """Backtracking best-first search within config.search_budget forward passes; best top_candidates back."""
    started = time.perf_counter()
    budget = config.search_budget
    width = max(1, config.beam_width)
    keep = max(1, config.top_candidates)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    constraint = make_constraint() if make_constraint is not None else None
    tree = TokenTree(lm, prompt_ids, config, constraint)
    tree.start()
    complete: list[Node] = []
    passed_over: list[Alternative] = []
    order = itertools.count()
    state = {"interrupted": False}

    def stopped() -> bool:
        if should_stop is not None and should_stop():
            state["interrupted"] = True
        return state["interrupted"] or tree.forward_passes >= budget

    def dive(starts: list[Node], temperature: float) -> None:
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
                child = tree.grow(beam, token, temperature)
                if child.status == "complete":
                    complete.append(child)
                    finished.append(key)
                elif child.status != "dead":
                    survivors.append(child)
            tree.evaluate([n for n in survivors if tree.needs_evaluation(n)]
                          + [n for n in complete if n.pending_logprobs])
            beams = [n for n in survivors if n.status == "open"]

    def estimate(alt: Alternative) -> float:
        """Final mean if the branch, after this token, went on as well as the best answer so far."""
        best = max(complete, key=lambda n: n.mean)
        done = alt.node.model_tokens + 1
        if alt.token in tree.eos_ids:
            return (alt.node.sum_logprob + alt.logprob) / done
        missing = max(best.model_tokens - done, 0)
        return (alt.node.sum_logprob + alt.logprob + missing * best.mean) / (done + missing)

    # The first dive is the cold limit of the search: exactly a beam of width beam_width.
    dive([tree.root], 0.0)
    first_passes = tree.forward_passes
    while not stopped() and passed_over:
        if not complete:
            break
        left = budget - tree.forward_passes
        progress = (tree.forward_passes - first_passes) / max(1, budget - first_passes)
        temperature = temperature_at(config, progress)
        scores = sorted((n.mean for n in complete), reverse=True)
        prune_below = scores[min(keep, len(scores)) - 1] - PRUNE_MARGIN
        typical = max(complete, key=lambda n: n.mean).model_tokens
        ranked_alts: list[tuple[float, Alternative]] = []
        kept: list[Alternative] = []
        best_promise = -math.inf
        for alt in passed_over:
            if alt.node.status != "open" or alt.token in alt.node.tried:
                continue
            value = estimate(alt)
            if value < prune_below:
                # Below the pruning bound: a dead end, remembered and never grown.
                alt.node.tried.add(alt.token)
                tree.dead[tree.path_tokens(alt.node) + (alt.token,)] = "below bound"
                continue
            kept.append(alt)
            best_promise = max(best_promise, value)
            if typical - alt.node.model_tokens > left and alt.token not in tree.eos_ids:
                continue  # too deep a detour to finish with the passes left
            # Annealing: the hotter, the more the choice of where to backtrack is a random draw.
            noise = 0.0
            if temperature > 1e-3:
                u = float(torch.rand((), generator=generator).clamp(1e-12, 1.0))
                noise = -math.log(-math.log(u)) * temperature / max(1, typical)
            ranked_alts.append((value + noise, alt))
        passed_over = kept
        if not ranked_alts or best_promise < scores[0] - CONVERGED_MARGIN:
            break  # nothing left that could plausibly beat the best answer: converged
        ranked_alts.sort(key=lambda pair: -pair[0])
        starts: list[Node] = []
        for _, alt in ranked_alts[:width]:
            child = tree.grow(alt.node, alt.token, temperature)
            passed_over.remove(alt)
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

    finish = "interrupted" if state["interrupted"] else None
    cands = [tree.candidate(n, "tree") for n in sorted(complete, key=lambda n: -n.mean)]
    if len(cands) < keep:
        # The budget ran out first: the deepest, best unfinished branches come back, marked as such.
        partial = [n for n in tree.evaluated if n.parent is not None and n.status in ("open", "exhausted")]
        partial.sort(key=lambda n: (-n.model_tokens, -n.mean))
        cands += [tree.candidate(n, "tree", finish or "budget") for n in partial[: keep - len(cands)]]
    result = tree.result(cands, "tree", started, finish, keep)
    if finish:
        for c in result.candidates:
            c.finish_reason = finish
    return result
