"""The worlds the corpus is written in: the real SEARCH/LOAD tools pointed at a knowledge base.

Training dialogues cycle through invented knowledge bases (`training_world`) and the shipped one
(`shipped_kb`); each is indexed into a temporary database that `agent.tools.search` / `load` read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from agent.grammar.system_prompt import build_system_prompt
from agent.tooling.registry import default_registry
from agent.tools import kb as kb_module
from training.kb_docs import KB_SEED, KnowledgeBase, build_kb


def system_prompt() -> str:
    """The system prompt the shell builds for the built-in tools (the model is trained on it)."""
    return build_system_prompt(list(default_registry()))


@contextmanager
def kb_world(kb: KnowledgeBase) -> Iterator[KnowledgeBase]:
    """Point the real SEARCH/LOAD tools at a fresh index of this knowledge base's documents."""
    old = os.environ.get("AGENT_KB")
    with tempfile.TemporaryDirectory(prefix="demo-kb-") as tmp:
        db_path = Path(tmp) / "kb.sqlite"
        kb_module.create_kb(db_path, [kb_module.Doc(d["id"], d["title"], d["text"]) for d in kb.docs()])
        os.environ["AGENT_KB"] = str(db_path)
        try:
            yield kb
        finally:
            if old is None:
                os.environ.pop("AGENT_KB", None)
            else:
                os.environ["AGENT_KB"] = old


def shipped_kb(seed: int = KB_SEED) -> AbstractContextManager[KnowledgeBase]:
    """The real SEARCH/LOAD tools over the shipped knowledge base (the documents of this seed)."""
    return kb_world(build_kb(seed))


def training_world(seed: int, index: int, avoid: set[str]) -> KnowledgeBase:
    """Another knowledge base of the same shape: new names and numbers, none of the words in `avoid`.

    Training on many such worlds leaves the model nothing to memorise: it has to copy the name
    from the question into SEARCH and the fact from the island into the answer, which is what
    it needs for the held-out entities of the shipped knowledge base.
    """
    kb = build_kb(f"world:{seed}:{index}", taken=avoid)
    for entity in kb.entities:
        entity.held_out = False
    return kb
