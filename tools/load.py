"""LOAD: one whole document of the knowledge base by id."""

from __future__ import annotations

from agent.tooling import ToolFailure, tool
from agent.tools import kb


@tool(pure=True, timeout=10.0)
def load(id: int) -> str:
    """Return the whole document with this id.

    The result is `TITLE: FULL TEXT`; an unknown id fails with "no document with id N".
    """
    doc = kb.get_doc(id)
    if doc is None:
        raise ToolFailure(f"no document with id {id}")
    return f"{doc.title}: {doc.text}"
