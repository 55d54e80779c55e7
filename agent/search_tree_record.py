"""A search's token tree as the plain record the store keeps (`AnswerRecord.search_tree`): per node its
id, parent, token ids, text, mean log-prob, status, reason, whether it ends an answer, and the tool call
it made (on any branch, chosen or not: tool, args, result, error, pure, speculative). The KV caches,
masks and log-prob vectors stay behind: the record is what `/tree` draws, nothing to decode on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from agent.decoding.results import SearchResult


def tree_record(result: SearchResult | None, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any] | None:
    """{"best_node": id, "nodes": [...]} of the explored tree, nodes parent first; None without a tree.
    The prompt's node is left out: its children have parent None."""
    if result is None or result.tree is None:
        return None
    root = result.tree
    nodes = [{"id": node.id, "parent": None if node.parent is root or node.parent is None else node.parent.id,
              "tokens": list(node.tokens), "text": tokenizer.decode(node.tokens, skip_special_tokens=False),
              "mean": node.mean, "status": node.status, "reason": node.reason, "eos": node.is_eos,
              "call": None if node.tool_call is None else node.tool_call.to_dict()}
             for node in root.subtree()[1:]]
    return {"best_node": result.best.node_id, "nodes": nodes}
