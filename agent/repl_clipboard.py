"""`/copy`: the last answer to the system clipboard, or, where there is none, to a file and the terminal.

The system clipboard is reached through the program each system has for it (what pyperclip would
run, without the dependency): pbcopy on macOS, wl-copy under Wayland, xclip or xsel under X11,
clip.exe on Windows and WSL. A machine with none (a server, a container, SSH without forwarding)
gets the answer written to a private file in the agent home, and, on a terminal, an OSC 52 escape
that asks the terminal itself to take it (iTerm2, kitty, WezTerm, Windows Terminal; tmux with
set-clipboard on). The REPL also keeps it in prompt_toolkit's clipboard: Ctrl-Y pastes it at the prompt.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.paths import agent_home, create_private_file

COPY_FILE = "copied.md"
TIMEOUT_S = 5.0  # a clipboard program that hangs (no display to talk to) must not hang the REPL


def clipboard_commands() -> list[list[str]]:
    """The clipboard programs this system could use, most fitting first (only those installed)."""
    candidates: list[list[str]] = []
    if sys.platform == "darwin":
        candidates.append(["pbcopy"])
    if os.environ.get("WAYLAND_DISPLAY"):
        candidates.append(["wl-copy"])
    if os.environ.get("DISPLAY"):
        candidates += [["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"]]
    candidates.append(["clip.exe"])  # Windows, and WSL's bridge to it
    return [command for command in candidates if shutil.which(command[0])]


def osc52(text: str) -> str:
    """The escape that asks the terminal to put `text` on its clipboard."""
    return "\x1b]52;c;" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "\x07"


@dataclass
class Copied:
    """Where `/copy` put the text: the program that took it, else the file (and whether OSC 52 was sent)."""

    program: str | None
    file: Path | None = None
    osc52: bool = False
    problem: str = ""  # why no program took it


def copy_text(text: str, *, terminal: bool) -> Copied:
    """Put `text` on the system clipboard; without one, into the agent home's `copied.md` and, when the
    output is a `terminal`, into an OSC 52 escape the caller writes."""
    problems = []
    for command in clipboard_commands():
        try:
            done = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, timeout=TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{command[0]}: {exc}")
            continue
        if done.returncode == 0:
            return Copied(program=command[0])
        problems.append(f"{command[0]}: {done.stderr.decode('utf-8', 'replace').strip() or done.returncode}")
    file = agent_home() / COPY_FILE
    create_private_file(file)
    file.write_text(text, encoding="utf-8")
    problem = "; ".join(problems) or "no pbcopy, wl-copy, xclip, xsel or clip.exe for this display"
    return Copied(program=None, file=file, osc52=terminal, problem=problem)
