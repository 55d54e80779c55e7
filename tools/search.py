"""SEARCH: ranked matches from the local knowledge base (SQLite FTS5)."""

from __future__ import annotations

from agent.tooling import tool
from agent.tools import kb


@tool(pure=True, timeout=10.0)
def search(query: str) -> str:
    """Search the knowledge base; returns the best matches as [id] title: text.

    The query's words are OR-ed (any word can match) and ranked by bm25; at most 3 hits,
    each `[ID] TITLE: TEXT` with the text cut to 200 characters, joined by ` | `.
    """
    hits = kb.search_docs(query)
    if not hits:
        return "no results"
    return " | ".join(kb.format_hit(d) for d in hits)
