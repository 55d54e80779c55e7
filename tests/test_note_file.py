"""The note tool's file is private to the user: created 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.tools.note import note


def test_the_notes_file_is_created_readable_by_the_user_only(agent_home: Path) -> None:
    old = os.umask(0o022)
    try:
        assert note("private") == "noted"
    finally:
        os.umask(old)
    path = agent_home / "notes.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert note("again") == "noted"
    assert path.read_text() == "private\nagain\n"
