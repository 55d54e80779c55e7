"""note: the built-in tool with a side effect (appends to a file), so it asks before it runs."""

from __future__ import annotations

import os

from agent.paths import agent_home
from agent.tooling import tool


@tool(pure=False, timeout=5.0)
def note(text: str) -> str:
    """Append a line of text to the notes file.

    The file is `notes.txt` in the agent home (AGENT_HOME); newlines in the text become spaces.
    """
    line = " ".join(text.splitlines()).rstrip()
    path = agent_home() / "notes.txt"
    # created 0600: notes are the user's own text, not for other accounts on the machine
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with open(fd, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return "noted"
