"""Growing the token tree on a served model (agent.model.openai_backend): one request per node.

A server keeps the KV, so a node's evaluation is its whole path sent as the prefix (the server's
prefix cache recomputes only what differs from what its slot held), with the grammar's mask for the
next token; the nodes of one pass are in flight together. The tree's bookkeeping is the same as for a
local model; one call of `evaluate_served` counts as one forward pass of the search's budget, as one
batched pass does locally, so a budget means the same number of expansion steps on both.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from agent.decoding.token_tree import Node, TokenTree


def evaluate_served(tree: TokenTree, nodes: list[Node]) -> None:
    """Evaluate `nodes` on the tree's served model, their requests in flight together (a server with several
    slots runs them as one batch, each slot keeping the KV of its own branch); Ctrl-C leaves them
    unevaluated, as a cut pass does."""
    assert tree.root.next_logprobs is not None or nodes == [tree.root]
    if tree.root.next_logprobs is not None:
        per_row = tree.root.next_logprobs.nbytes * 2  # log-probs and (at most) a grammar mask
        tree.memory.make_room(tree.root, len(nodes) * per_row, nodes, tree.kill)
    masks = [tree.allowed_next(node) for node in nodes]  # the grammar stays on this thread

    def ask(index: int) -> torch.Tensor:
        node = nodes[index]
        prefix = tree.prompt_ids + node.response_ids()[0]
        if node.pending_logprobs:
            score_forced_tokens(tree, node, prefix)
        return tree.lm.next_logprobs(prefix, masks[index])

    try:
        if len(nodes) == 1:
            answers = [ask(0)]
        else:
            with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
                answers = list(pool.map(ask, range(len(nodes))))
    except KeyboardInterrupt:
        tree.interrupted = True
        tree.unevaluated.extend(nodes)
        return
    for node, next_logprobs, allowed in zip(nodes, answers, masks):
        tree.token_evaluations += len(node.tokens)
        tree.finish_evaluation(node, next_logprobs, allowed)
    tree.forward_passes += 1


def score_forced_tokens(tree: TokenTree, node: Node, prefix: list[int]) -> None:
    """The log-probs of the grammar-forced (not island) tokens after the node's first: one request each,
    with the token as the only one allowed, so the server's answer always includes it. `prefix` is the
    prompt and the whole path, the node's tokens last."""
    start = len(prefix) - len(node.tokens)
    for i in range(1, len(node.tokens)):
        if node.island[i]:
            continue
        only = torch.zeros(tree.lm.vocab_size, dtype=torch.bool)
        only[node.tokens[i]] = True
        value = float(tree.lm.next_logprobs(prefix[: start + i], only)[node.tokens[i]])
        node.logprobs[i] = value
        node.sum_logprob += value
    node.pending_logprobs = False
