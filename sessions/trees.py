"""A turn's search tree packed into one `search_trees` row (JSON columns) and read back.

A search explores thousands of nodes, always read per turn: one row of columns (see
`schema.m010_search_trees`) is written in a few milliseconds, where a row per node would not be.
"""

from __future__ import annotations

import json
import math
from typing import Any

from agent.safe_text import valid_text

from .records import StoredTree, StoredTreeNode
from .rows import dumps
from .schema import TREE_FIELDS

TREE_SQL = "INSERT INTO search_trees (turn_id, session_id, turn, nodes, best_node, columns) VALUES (?, ?, ?, ?, ?, ?)"


def _mean(value: Any) -> float | None:
    """A mean log-prob for JSON (which has no infinity or NaN): None then."""
    number = None if value is None else float(value)
    return number if number is not None and math.isfinite(number) else None


def tree_row(session_id: str, turn: int, tree: dict[str, Any] | None) -> tuple | None:
    """The search_trees row (without turn_id) of `tree` ({"best_node", "nodes": [...]}); None without one."""
    if not tree or not tree.get("nodes"):
        return None
    nodes = tree["nodes"]
    columns = {
        "id": [int(n["id"]) for n in nodes],
        "parent": [None if n.get("parent") is None else int(n["parent"]) for n in nodes],
        "tokens": [[int(t) for t in n.get("tokens", [])] for n in nodes],
        "text": [valid_text(str(n.get("text", ""))) for n in nodes],
        "mean": [_mean(n.get("mean")) for n in nodes],
        "status": [str(n.get("status", "")) for n in nodes],
        "reason": [valid_text(str(n.get("reason") or "")) for n in nodes],
        "eos": [1 if n.get("eos") else 0 for n in nodes],
        "call": [n.get("call") for n in nodes],
    }
    best = tree.get("best_node")
    return (session_id, turn, len(nodes), None if best is None else int(best),
            dumps(columns))


def tree_out(turn: int, best_node: int | None, packed: str) -> StoredTree:
    """A search_trees row as the tree it was written from."""
    columns = json.loads(packed)
    count = len(columns["id"])
    nodes = [StoredTreeNode(id=i, parent=p, tokens=t, text=x, mean=m, status=s, reason=r, eos=bool(e), call=c)
             for i, p, t, x, m, s, r, e, c in zip(*(columns.get(f, [None] * count) for f in TREE_FIELDS), strict=True)]
    return StoredTree(turn=turn, best_node=best_node, nodes=nodes)
