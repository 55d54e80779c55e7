"""Where the shell keeps its files: AGENT_HOME, else the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def agent_home() -> Path:
    """The directory for the session database, knowledge base and REPL history (created on demand,
    0700: it holds everything typed and answered; an existing directory keeps its mode)."""
    env = os.environ.get("AGENT_HOME")
    home = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("agent", appauthor=False))
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def default_db_path() -> Path:
    """The session database."""
    return agent_home() / "sessions.sqlite"


def default_kb_path() -> Path:
    """The knowledge base behind SEARCH and LOAD (AGENT_KB overrides it, see agent.tools.kb)."""
    return agent_home() / "kb.sqlite"


def history_path() -> Path:
    """The REPL's input history."""
    return agent_home() / "repl_history"
