"""The token tree: continuations of one prompt as nodes that each hold the KV of their own tokens.

A node is one sampled token plus any tokens the constraint forced after it (a tool-result island),
and it holds the keys and values of exactly those tokens. The KV of a path is the prompt's KV
followed by its nodes' KV, so no prefix ever goes through the model twice (KV reuse ratio = token
evaluations / tree tokens = 1.0). Several nodes go through the model in one forward pass: their
paths' KV are stacked with left padding, an attention mask hides the padding and explicit position
ids keep every row at its true positions, so the scores are exact (tests/test_tree_search.py checks
them against a fresh full forward pass).

Beam search, best-of-N and the tree search (agent.decoding.beam, .best_of_n, .tree) all run on it:
they differ only in which nodes they ask it to grow. `TokenTree.open` and `TokenTree.result` are
their shared set-up and tear-down.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.decode import response_text
from agent.decoding.grounding import biased
from agent.decoding.kv_cache import PrefixCache, TreeMemory, run_prompt
from agent.decoding.limits import Deadline
from agent.decoding.loop_guard import TAIL_TOKENS, ends_in_loop, model_text
from agent.decoding.path_kv import PathKV
from agent.decoding.progress import ProgressReporter, ProgressSink
from agent.decoding.results import Candidate, SearchResult, rank
from agent.decoding.scoring import score_parts
from agent.decoding.served_tree import evaluate_served
from agent.model.backend import ModelBackend
from agent.tooling.records import ToolCallRecord


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
    constraint: ResponseConstraint | None = None
    tool_call: ToolCallRecord | None = None
    is_eos: bool = False
    eos_logprob: float | None = None
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer [kv_heads, len(tokens), head_dim]
    next_logprobs: torch.Tensor | None = None  # [vocab] after the node's last token
    allowed: torch.Tensor | None = None  # [vocab] bool: what the grammar allows next (None = all)
    children: dict[int, Node] = field(default_factory=dict)
    tried: set[int] = field(default_factory=set)  # tokens grown already (children and dead ends)
    status: str = "new"  # new | open | closed (offers nothing more: memory budget) | complete | dead
    reason: str = ""  # why complete or dead
    pending_logprobs: bool = False  # forced non-island tokens whose log-probs come with evaluation

    @property
    def mean(self) -> float:
        count = self.model_tokens + (1 if self.eos_logprob is not None else 0)
        total = self.sum_logprob + (self.eos_logprob or 0.0)
        return total / count if count else 0.0

    def subtree(self) -> list[Node]:
        """This node and every node below it, parents before children, children in the order grown."""
        nodes, stack = [], [self]
        while stack:
            node = stack.pop()
            nodes.append(node)
            stack.extend(reversed(list(node.children.values())))
        return nodes

    def path(self) -> list[Node]:
        """The nodes from the root's first child down to this one."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def response_ids(self) -> tuple[list[int], list[bool]]:
        """The response's tokens along the path, and which of them are islands."""
        steps = self.path()
        return [t for n in steps for t in n.tokens], [i for n in steps for i in n.island]

    def path_tokens(self) -> tuple[int, ...]:
        """The path's tokens, with -1 where it ended in EOS (not a token of the response): a dead end's key."""
        return tuple(t for n in self.path() for t in n.tokens + ([-1] if n.is_eos else []))


class TokenTree:
    """Continuations of one prompt as a tree of nodes, each holding the KV of its own tokens."""

    def __init__(self, lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig,
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
        self.forward_passes = 0
        self.token_evaluations = 0  # response tokens run through the model
        self.tree_tokens = 0  # response tokens held by evaluated nodes
        self.evaluated: list[Node] = []
        self.dead: dict[tuple[int, ...], str] = {}  # path of every dead end -> why
        self.stop_strings = [s for s in config.stop if s]
        self.keep_special = constraint is not None  # see agent.decoding.decode.response_text
        self.pad_id = int(lm.tokenizer.pad_token_id or 0)
        self.started = time.perf_counter()
        self.deadline = Deadline(config.time_limit)  # the wall-clock limit, from the search's start
        self.memory = TreeMemory(config.kv_budget_bytes)
        # Set when the user stopped the search (Ctrl-C in a forward pass, or should_stop said so).
        self.interrupted = False
        self.unevaluated: list[Node] = []  # the nodes of the pass Ctrl-C cut short
        self.progress: ProgressReporter | None = None  # where the live status goes (TokenTree.open)
        self.path_kv = PathKV([])  # the paths' KV for each pass, from the prompt's once start() ran it
        self.reused_prompt_tokens = 0  # prompt tokens whose KV came from the session's prefix cache

    @classmethod
    def open(cls, lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig,
             make_constraint: Callable[[], ResponseConstraint | None] | None,
             on_progress: ProgressSink | None = None, prefix_cache: PrefixCache | None = None) -> TokenTree:
        """A strategy's set-up: a fresh constraint at the root, the prompt run once, the clock started;
        `on_progress` then hears how the search stands each time it checks whether to stop. With the
        session's `prefix_cache` the prompt runs on top of what the last turn left there (the history),
        and the prompt's KV is left there for the next turn."""
        constraint = make_constraint() if make_constraint is not None else None
        tree = cls(lm, prompt_ids, config, constraint)
        tree.progress = ProgressReporter(on_progress) if on_progress is not None else None
        tree.start(prefix_cache)
        return tree

    def spent(self) -> bool:
        """Is the search's budget spent: its forward passes, or its wall-clock time (config.time_limit)?"""
        return self.forward_passes >= self.config.search_budget or self.deadline.passed()

    def stop_requested(self, should_stop: Callable[[], bool] | None) -> bool:
        """Has the user stopped the search (Ctrl-C in a pass before, or should_stop now)?"""
        if self.progress is not None:
            self.progress.report(self)
        if not self.interrupted and should_stop is not None and should_stop():
            self.interrupted = True
        return self.interrupted

    # -- model -----------------------------------------------------------------------------------
    def start(self, prefix_cache: PrefixCache | None = None) -> None:
        """Run the prompt once (only what `prefix_cache` does not hold); its KV is the root of every path."""
        if not self.lm.holds_weights:
            self.token_bytes = 0  # a served model: the KV is the server's
            evaluate_served(self, [self.root])
            return
        try:
            cache, logits, self.reused_prompt_tokens = run_prompt(self.lm, self.prompt_ids, prefix_cache)
        except KeyboardInterrupt:
            self.interrupted = True  # nothing to grow from: the strategy's loop never starts
            return
        self.forward_passes += 1
        self.root.kv = [(layer.keys[0], layer.values[0]) for layer in cache.layers]  # read, never written
        self.path_kv = PathKV(self.root.kv)
        self.finish_evaluation(self.root, logits.float().log_softmax(-1), self.allowed_next(self.root))
        self.token_bytes = sum(k.nbytes + v.nbytes for k, v in self.root.kv) // len(self.prompt_ids)

    def evaluate(self, nodes: list[Node]) -> None:
        """One forward pass over several nodes: each row is its path's KV plus the node's tokens."""
        if not nodes:
            return
        if not self.lm.holds_weights:
            evaluate_served(self, nodes)
            return
        paths = [node.path() for node in nodes]
        past_lens = [len(self.prompt_ids) + sum(len(a.tokens) for a in path[:-1]) for path in paths]
        new_lens = [len(node.tokens) for node in nodes]
        past_width, new_width, rows = max(past_lens), max(new_lens), len(nodes)
        assert self.root.next_logprobs is not None
        per_row = self.root.next_logprobs.nbytes * 2  # log-probs and (at most) a grammar mask
        self.memory.make_room(self.root, sum(new_lens) * self.token_bytes + rows * per_row, nodes, self.kill)
        device = self.lm.device
        cache = self.path_kv.build([path[:-1] for path in paths], past_lens)
        input_ids = torch.full((rows, new_width), self.pad_id, dtype=torch.long, device=device)
        positions = torch.zeros((rows, new_width), dtype=torch.long, device=device)
        mask = torch.zeros((rows, past_width + new_width), dtype=torch.long, device=device)
        for row, node in enumerate(nodes):
            n = new_lens[row]
            input_ids[row, new_width - n:] = torch.tensor(node.tokens, dtype=torch.long, device=device)
            positions[row, new_width - n:] = torch.arange(past_lens[row], past_lens[row] + n, device=device)
            mask[row, past_width - past_lens[row]:past_width] = 1
            mask[row, past_width + new_width - n:] = 1
        try:
            with torch.inference_mode():
                out = self.lm.run(cache, input_ids=input_ids, attention_mask=mask, position_ids=positions)
        except KeyboardInterrupt:
            # Ctrl-C in the middle of a pass (where a search spends its time): the nodes stay
            # unevaluated (their own tokens are scored already) and the strategy stops with what it has.
            self.interrupted = True
            self.unevaluated.extend(nodes)
            return
        self.forward_passes += 1
        self.path_kv.remember(nodes, cache, past_lens, new_lens)
        logits = out.logits
        for row, node in enumerate(nodes):
            n = new_lens[row]
            own = slice(past_width + new_width - n, None)  # this node's tokens in the row
            node.kv = [(layer.keys[row, :, own].clone(), layer.values[row, :, own].clone()) for layer in cache.layers]
            self.token_evaluations += n
            if node.pending_logprobs:
                # Forced tokens the model is scored on (grammar-forced text, not islands).
                node_logprobs = torch.log_softmax(logits[row, new_width - n:].float(), dim=-1)
                for i in range(1, n):
                    if not node.island[i]:
                        value = float(node_logprobs[i - 1, node.tokens[i]])
                        node.logprobs[i] = value
                        node.sum_logprob += value
                node.pending_logprobs = False
            self.finish_evaluation(node, logits[row, -1].float().log_softmax(-1), self.allowed_next(node))

    def allowed_next(self, node: Node) -> torch.Tensor | None:
        """What the grammar allows after the node ([vocab] bool), for a node that may still grow; None: all."""
        if node.constraint is None or node.status not in ("new", "open"):
            return None
        node.constraint.set_tokens_left(self.config.max_new_tokens - node.model_tokens)
        allowed, width = node.constraint.allowed_tokens(), self.lm.vocab_size
        if allowed is None:
            return None
        if allowed.shape[0] < width:  # logits may be wider than the tokenizer's vocabulary
            allowed = torch.cat([allowed, allowed.new_zeros(width - allowed.shape[0])])
        return allowed[:width].to(self.lm.device)

    def finish_evaluation(self, node: Node, next_logprobs: torch.Tensor, allowed: torch.Tensor | None) -> None:
        """Record what the model said after the node (with grounding's prior) and what the grammar allows there."""
        node.next_logprobs = biased(next_logprobs, node.constraint) if allowed is not None else next_logprobs
        self.tree_tokens += len(node.tokens)
        self.evaluated.append(node)
        self.memory.add(node)
        if node.status == "new":
            node.status = "open"
        if node.status != "open":  # complete (evaluated for its scores): nothing grows from it
            self.memory.release(node)
            return
        node.allowed = allowed
        if allowed is not None and not bool(allowed.any()):
            self.kill(node, "grammar: nothing allowed")

    # -- growing ---------------------------------------------------------------------------------
    def kill(self, node: Node, reason: str) -> None:
        node.status = "dead"
        node.reason = reason
        self.memory.release(node, kv=node.parent is not None)
        self.dead[node.path_tokens()] = reason

    def token_logprob(self, node: Node, token: int) -> float:
        assert node.next_logprobs is not None
        return float(node.next_logprobs[token])

    def offer_mask(self, node: Node) -> torch.Tensor:
        """What the node may offer: allowed, not tried, of known probability (a served model gives the top k)."""
        assert node.next_logprobs is not None
        mask = torch.isfinite(node.next_logprobs)
        if node.allowed is not None:
            mask &= node.allowed
        if node.tried:
            mask[torch.tensor(sorted(node.tried), dtype=torch.long, device=mask.device)] = False
        return mask

    def grow(self, parent: Node, token: int) -> Node:
        """Make the child of `parent` for `token` (not yet evaluated); it may be complete or dead."""
        parent.tried.add(token)
        lp = self.token_logprob(parent, token)
        child = Node(id=next(self._ids), parent=parent, tokens=[], island=[], logprobs=[],
                     sum_logprob=parent.sum_logprob, model_tokens=parent.model_tokens, depth=parent.depth)
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
            except Exception as exc:  # constraints raise their own types: a dead end
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
        if ends_in_loop(model_text(self.lm.tokenizer, *child.response_ids(), tail_tokens=TAIL_TOKENS)):
            self.kill(child, "loop")
            return child
        if child.constraint is not None and child.constraint.pending_call is not None:
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

    def _may_end(self, constraint: ResponseConstraint) -> bool:
        """Would the grammar accept the response as it stands (end-of-sequence allowed)?"""
        constraint.set_tokens_left(0)
        allowed = constraint.allowed_tokens()
        if allowed is None:
            return True
        return any(0 <= e < allowed.shape[0] and bool(allowed[e]) for e in self.eos_ids)

    def _hits_stop(self, node: Node) -> bool:
        ids = node.response_ids()[0][-64:]
        tail = response_text(self.lm.tokenizer, ids, self.keep_special)
        return any(s in tail for s in self.stop_strings)

    def needs_evaluation(self, node: Node) -> bool:
        """Open nodes are run to get their next-token distribution; complete ones only if scores are missing."""
        return node.status == "new" or (node.status == "complete" and node.pending_logprobs)

    # -- reading out -----------------------------------------------------------------------------
    def candidate(self, node: Node, strategy: str, finish: str | None = None) -> Candidate:
        """The response along the path to `node`, scored; `finish` overrides the node's own reason."""
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
        text = response_text(self.lm.tokenizer, ids, self.keep_special)
        reason = finish or (node.reason if node.status == "complete" else "budget")
        if reason == "pending call":
            reason = "tool"
        if reason == "stop":
            for s in self.stop_strings:
                if s in text:
                    text = text[: text.index(s)]
                    break
        parts = score_parts(logprobs, islands, ids, eos_logprob=node.eos_logprob, text=text,
                            loop_text=model_text(self.lm.tokenizer, ids, islands))
        constraint = node.constraint if node.constraint is not None or node.parent is None else (
            node.parent.constraint if node.is_eos else None)
        return Candidate.scored(text, ids, islands, logprobs, parts, strategy=strategy, finish_reason=reason,
                                eos_logprob=node.eos_logprob, tool_calls=calls, constraint=constraint,
                                node_id=node.id)

    def result(self, strategy: str, complete: list[Node], unfinished: list[Node], *, interrupted: bool,
               keep: int | None = None) -> SearchResult:
        """A strategy's tear-down: its answer, candidates ranked best first, with the tree's counts.

        `complete` nodes end as they ended, `unfinished` ones (what a strategy falls back on when the
        budget ran out) as "budget", every one as "interrupted" when the user stopped the search; the
        root stands in when there is nothing else.
        """
        candidates = [self.candidate(node, strategy) for node in complete]
        candidates += [self.candidate(node, strategy, "budget") for node in unfinished]
        if not candidates:
            candidates = [self.candidate(self.root, strategy, "budget")]
        ranked = rank(candidates)[:keep]
        if interrupted:
            for candidate in ranked:
                candidate.finish_reason = "interrupted"
        return SearchResult(best=ranked[0], candidates=ranked, forward_passes=self.forward_passes, tree=self.root,
                            kv_reuse_ratio=self.kv_reuse_ratio, seconds=time.perf_counter() - self.started,
                            strategy=strategy, token_evaluations=self.token_evaluations, kv_peak_bytes=self.memory.peak,
                            prompt_tokens=len(self.prompt_ids), reused_prompt_tokens=self.reused_prompt_tokens)

    @property
    def kv_reuse_ratio(self) -> float:
        """Model token evaluations / tokens in the tree: 1.0 means no prefix was ever recomputed."""
        return self.token_evaluations / self.tree_tokens if self.tree_tokens else 1.0

