"""Where the shell keeps its files: AGENT_HOME, else the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


class HomeError(Exception):
    """The agent home cannot be created (a read-only disk, a file in the way): the message names it."""


def _home_dir() -> Path:
    env = os.environ.get("AGENT_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("agent", appauthor=False))


def agent_home() -> Path:
    """The directory for the session database, knowledge base and REPL history (created on demand,
    0700: it holds everything typed and answered; an existing directory keeps its mode). HomeError,
    naming the folder and a way out, when it cannot be created."""
    home = _home_dir()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeError(f"cannot create the agent home {home}: {exc.strerror or exc}; set AGENT_HOME to a "
                        "folder you can write, or pass --db PATH (or --no-save)") from exc
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


def history_writable() -> bool:
    """Whether the REPL's history file can be kept (the home exists or can be made, and the file can be
    opened for appending); a read-only home keeps the history in memory instead."""
    try:
        path = history_path()
        with path.open("a", encoding="utf-8"):
            pass
    except (HomeError, OSError):
        return False
    return True


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 (its folder 0700) unless it exists: databases hold what was
    typed and answered, and SQLite gives its journal/-wal/-shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # it exists already, or another process created it first
