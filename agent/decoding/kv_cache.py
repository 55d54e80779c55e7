"""KV memory: cropping a cache across transformers versions, the per-session prefix cache (and running a
search's prompt on it: run_prompt), and the token tree's memory budget (TreeMemory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

if TYPE_CHECKING:
    from agent.decoding.token_tree import Node
    from agent.model.runtime import LoadedModel


def crop_cache(cache: DynamicCache, keep: int) -> None:
    """Cut the cache back to its first `keep` positions.

    A negative argument to `crop` means "remove this many" in every transformers version we accept.
    """
    remove = cache.get_seq_length() - keep
    if remove > 0:
        cache.crop(-remove)


class PrefixCache:
    """The KV cache of the last sequence a session ran, reused when the next prompt extends it."""

    def __init__(self) -> None:
        self.token_ids: list[int] = []
        self.cache: DynamicCache | None = None

    def reset(self) -> None:
        self.token_ids = []
        self.cache = None

    def take(self, prompt_ids: list[int]) -> tuple[DynamicCache, int]:
        """A cache holding the longest reusable prefix of prompt_ids, and that prefix's length.

        At least the last prompt token is always left to run, since its logits start the response.
        """
        if self.cache is None:
            return DynamicCache(), 0
        common = 0
        for cached, new in zip(self.token_ids, prompt_ids, strict=False):
            if cached != new:
                break
            common += 1
        common = min(common, len(prompt_ids) - 1)
        if common <= 0:
            self.reset()
            return DynamicCache(), 0
        crop_cache(self.cache, common)
        cache, self.cache, self.token_ids = self.cache, None, []
        return cache, common

    def keep(self, token_ids: list[int], cache: DynamicCache) -> None:
        self.token_ids = list(token_ids)
        self.cache = cache


def run_prompt(lm: LoadedModel, prompt_ids: list[int], prefix_cache: PrefixCache | None
               ) -> tuple[DynamicCache, torch.Tensor, int]:
    """The prompt run on top of what `prefix_cache` holds (only the rest is evaluated): its KV, the logits at
    its last position, and how many of its tokens the cache held. Its KV is left in `prefix_cache` for the
    next turn, whose prompt starts with this one (a run that raised leaves nothing there)."""
    cache, reused = prefix_cache.take(prompt_ids) if prefix_cache is not None else (DynamicCache(), 0)
    ids = torch.tensor([prompt_ids[reused:]], dtype=torch.long, device=lm.device)
    with torch.inference_mode():
        logits = lm.run(cache, input_ids=ids).logits[0, -1]
    if prefix_cache is not None:
        prefix_cache.keep(prompt_ids, cache)
    return cache, logits, reused


def tensor_bytes(node: Node) -> int:
    """What a tree node holds in memory: its tokens' KV, its next-token log-probs and grammar mask."""
    total = sum(keys.nbytes + values.nbytes for keys, values in node.kv or [])
    for tensor in (node.next_logprobs, node.allowed):
        if tensor is not None:
            total += tensor.nbytes
    return total


class TreeMemory:
    """The token tree's memory (KV, next-token log-probs, masks) kept within a budget in bytes.

    Before a forward pass makes room for what it will add: first the KV no branch needs any more (a
    node's KV is needed while it can still be grown, or a node below it can), then the worst open
    branches by mean log-prob (ties: the oldest) stop offering continuations. A branch with nothing
    below it becomes a dead end (remembered, never grown again); one with branches below is "closed"
    (it offers nothing more, and keeps its KV only while a branch below it may still grow). The nodes
    about to be evaluated and their paths are never touched, so a search can always go on; `peak` is
    the most the tree held at any time.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.peak = 0
        self.dropped = 0  # branches closed or made dead ends to stay within the budget

    def add(self, node: Node) -> None:
        self.used += tensor_bytes(node)
        self.peak = max(self.peak, self.used)

    def release(self, node: Node, *, kv: bool = True, offers: bool = True) -> None:
        """Forget the node's KV and/or what it offers next (its log-probs and grammar mask)."""
        if kv and node.kv is not None:
            self.used -= sum(keys.nbytes + values.nbytes for keys, values in node.kv)
            node.kv = None
        if offers:
            for name in ("next_logprobs", "allowed"):
                tensor = getattr(node, name)
                if tensor is not None:
                    self.used -= tensor.nbytes
                    setattr(node, name, None)

    def make_room(self, root: Node, incoming: int, protect: list[Node],
                  kill: Callable[[Node, str], None]) -> None:
        """Free memory until `incoming` more bytes fit in the budget (as far as the protected nodes allow)."""
        if self.used + incoming <= self.budget:
            return
        target = self.budget - incoming
        nodes = root.subtree()
        needed = kv_needed(nodes)
        for node in nodes:
            if node is not root and node.kv is not None and id(node) not in needed:
                self.release(node, offers=False)
        if self.used <= target:
            return
        keep = {id(node) for node in protect}
        for node in protect:  # their paths: the pass reads every ancestor's KV
            keep.update(id(step) for step in node.path())
        victims = [n for n in nodes if n is not root and n.status == "open" and id(n) not in keep]
        victims.sort(key=lambda n: (n.mean, n.id))
        for node in victims:
            if self.used <= target:
                break
            self.dropped += 1
            if node.children:  # what grew from it stays (a dead end has nothing below it)
                self.release(node, kv=not any(id(child) in needed for child in node.children.values()))
                node.status, node.reason = "closed", "memory budget"
            else:
                kill(node, "memory budget")


def kv_needed(nodes: list[Node]) -> set[int]:
    """ids of the nodes whose KV a forward pass may still read: growable ones and their ancestors."""
    needed: set[int] = set()
    for node in reversed(nodes):  # children before parents
        growing = node.status in ("new", "open") or (node.status == "complete" and node.pending_logprobs)
        if growing or any(id(child) in needed for child in node.children.values()):
            needed.add(id(node))
    return needed
