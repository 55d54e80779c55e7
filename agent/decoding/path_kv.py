"""The KV of several paths of the token tree, stacked for one forward pass.

A path's KV is the prompt's followed by each of its nodes' own (agent.decoding.token_tree). Joining
them anew for every pass costs a concatenation per ancestor and layer, and a dive one token deep per
pass joins its whole path again each time: on the demo model that was a quarter of a tree search's
time. After a pass the cache holds each row's whole path already, so the rows of the last pass are
kept (views of that cache, no copy) and a node grown from one of them starts from it. Only the last
pass's rows are kept, so what is held beyond the tree's own KV is one pass's cache. The values are
the same numbers either way (the nodes' KV are copies of those rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

if TYPE_CHECKING:
    from agent.decoding.token_tree import Node

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [kv_heads, length, head_dim]


class PathKV:
    """Builds a pass's cache from the paths' KV, reusing the previous pass's whole rows."""

    def __init__(self, prompt_kv: list[LayerKV]) -> None:
        self.prompt_kv = prompt_kv
        self._last: dict[int, list[LayerKV]] = {}  # node id -> its whole path's KV (prompt included)

    def _whole(self, path: Sequence[Node], layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The KV of the prompt and every node of `path`, joined."""
        if _end_id(path) in self._last:
            return self._last[_end_id(path)][layer]
        keys, values = self.prompt_kv[layer]
        if not path:
            return keys, values
        own = [_own_kv(node)[layer] for node in path]
        return torch.cat([keys] + [k for k, _ in own], dim=1), torch.cat([values] + [v for _, v in own], dim=1)

    def build(self, pasts: list[list[Node]], past_lens: list[int]) -> DynamicCache:
        """A cache of len(pasts) rows: row r holds the KV of the prompt and pasts[r], left-padded to the
        longest (an attention mask must hide the padding)."""
        cache = DynamicCache()
        rows, past_width = len(pasts), max(past_lens)
        for layer in range(len(self.prompt_kv)):
            joined: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # siblings share their parent's
            for past in pasts:
                if _end_id(past) not in joined:
                    joined[_end_id(past)] = self._whole(past, layer)
            if rows == 1:  # one row and no padding: the joined tensors themselves (the model copies on update)
                keys, values = joined[next(iter(joined))]
                cache.update(keys.unsqueeze(0), values.unsqueeze(0), layer)
                continue
            cache.update(*left_padded([joined[_end_id(past)] for past in pasts], past_width), layer)
        return cache

    def remember(self, nodes: Sequence[Node], cache: DynamicCache, past_lens: list[int], new_lens: list[int]) -> None:
        """Keep the rows of the pass just run whose tokens sit right after their past (no padding between)."""
        past_width, new_width = max(past_lens), max(new_lens)
        self._last = {}
        for row, node in enumerate(nodes):
            if new_lens[row] != new_width:
                continue
            start = past_width - past_lens[row]
            self._last[node.id] = [(layer.keys[row, :, start:], layer.values[row, :, start:])
                                   for layer in cache.layers]


def left_padded(rows: Sequence[LayerKV], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's keys and values of several rows ([kv_heads, length, head_dim] each), stacked into
    [rows, kv_heads, width, head_dim] with each row at the right end (an attention mask must hide the zeros)."""
    first_keys, first_values = rows[0]
    heads, _, dim = first_keys.shape
    keys = first_keys.new_zeros((len(rows), heads, width, dim))
    values = first_values.new_zeros((len(rows), heads, width, dim))
    for row, (row_keys, row_values) in enumerate(rows):
        keys[row, :, width - row_keys.shape[1]:] = row_keys
        values[row, :, width - row_values.shape[1]:] = row_values
    return keys, values


def _end_id(path: Sequence[Node]) -> int:
    """The id of the path's last node, -1 for the empty path (the prompt alone; node ids start at 0)."""
    return path[-1].id if path else -1


def _own_kv(node: Node) -> list[LayerKV]:
    if node.kv is None:  # a dropped node's descendants are never grown (agent.decoding.kv_cache)
        raise RuntimeError(f"node {node.id} on a path being evaluated holds no KV")
    return node.kv
