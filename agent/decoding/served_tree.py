"""Growing the token tree on a served model (agent.model.openai_backend): one request per node (and one
per grammar-forced token whose log-prob the score needs).

A server keeps the KV, so a node's evaluation is its whole path sent as the prefix (the server's
prefix cache recomputes only what differs from what its slot held), with the grammar's mask for the
next token; the requests of one pass go to the backend together. The tree's bookkeeping is the same as for a
local model; one call of `evaluate_served` counts as one forward pass of the search's budget, as one
batched pass does locally, so a budget means the same number of expansion steps on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from agent.decoding.token_tree import Node, TokenTree


def evaluate_served(tree: TokenTree, nodes: list[Node]) -> None:
    """Evaluate `nodes` on the tree's served model: the pass's requests go to the backend together (a
    server with several slots runs them side by side, each slot keeping the KV of its own branch); Ctrl-C
    leaves them unevaluated, as a cut pass does."""
    assert tree.root.next_logprobs is not None or nodes == [tree.root]
    if tree.root.next_logprobs is not None:
        per_row = tree.root.next_logprobs.nbytes * 2  # log-probs and (at most) a grammar mask
        tree.memory.make_room(tree.root, len(nodes) * per_row, nodes, tree.kill)
    masks = [tree.allowed_next(node) for node in nodes]  # the grammar stays on this thread
    requests: list[tuple[list[int], torch.Tensor | None]] = []
    forced: list[list[tuple[int, int]]] = []  # per node: (its token's index, the request scoring it)
    own: list[int] = []  # per node: its own request, for what may follow it
    for node, allowed in zip(nodes, masks):
        prefix = tree.prompt_ids + node.response_ids()[0]
        forced.append(forced_token_requests(tree, node, prefix, requests) if node.pending_logprobs else [])
        own.append(len(requests))
        requests.append((prefix, allowed))
    try:
        answers = tree.lm.next_logprobs_many(requests)
    except KeyboardInterrupt:
        tree.interrupted = True
        tree.unevaluated.extend(nodes)
        return
    for node, allowed, scored, request in zip(nodes, masks, forced, own):
        for token_index, scoring in scored:
            value = float(answers[scoring][node.tokens[token_index]])
            node.logprobs[token_index] = value
            node.sum_logprob += value
        node.pending_logprobs = False
        tree.token_evaluations += len(node.tokens)
        tree.finish_evaluation(node, answers[request], allowed)
    tree.forward_passes += 1


def forced_token_requests(tree: TokenTree, node: Node, prefix: list[int],
                          requests: list[tuple[list[int], torch.Tensor | None]]) -> list[tuple[int, int]]:
    """Requests for the log-probs of the grammar-forced (not island) tokens after the node's first, each
    with the token as the only one allowed, so the server's answer always includes it; appended to
    `requests`. `prefix` is the prompt and the whole path, the node's tokens last. Returns (the token's
    index in the node, its request's index)."""
    start = len(prefix) - len(node.tokens)
    scored: list[tuple[int, int]] = []
    for i in range(1, len(node.tokens)):
        if node.island[i]:
            continue
        only = torch.zeros(tree.lm.vocab_size, dtype=torch.bool)
        only[node.tokens[i]] = True
        scored.append((i, len(requests)))
        requests.append((prefix[: start + i], only))
    return scored
