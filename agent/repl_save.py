"""`/save FILE`: the conversation as it stands, as a Markdown file to read (not a session export).

The answers are written as the Markdown they are (so a viewer renders them as the REPL does); the
questions are block quotes; the system prompt is left out (it is long and the same for every
session: `agent sessions export ID` keeps everything). Control characters show as symbols. An
existing file is never overwritten: the REPL names it and nothing is written.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from agent.model.chat_format import Message
from agent.safe_text import printable
from agent.sessions.export import markdown_text


def conversation_markdown(messages: list[Message], *, model_id: str, session_id: str | None,
                          system_text: str | None) -> str:
    """The user and assistant messages, numbered by turn, under a heading made from the first question."""
    questions = [m["content"] for m in messages if m["role"] == "user"]
    heading = " ".join(questions[0].split())[:60] if questions else "Conversation"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# {markdown_text(heading)}", "", f"- model: {markdown_text(model_id)}",
           f"- session: {session_id or '(not saved)'}", f"- written: {when}"]
    if system_text:
        out.append(f"- system text: {markdown_text(system_text)}")
    out.append("")
    turn = 0
    for message in messages:
        if message["role"] == "user":
            turn += 1
            out += [f"## {turn}. Question", ""]
            out += [f"> {line}" if line else ">" for line in message["content"].splitlines() or [""]]
            out.append("")
        elif message["role"] == "assistant":
            out += [f"## {turn}. Answer", "", message["content"].strip("\n"), ""]
    return printable("\n".join(out).rstrip() + "\n")


def save_new_file(path: Path, text: str) -> None:
    """Write `text` to a file that must not exist yet, mode 0600 (a conversation may hold anything that
    was typed). ValueError, saying so in the user's terms, when it exists or cannot be created."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValueError(f"{path} exists: nothing written (choose another name)") from None
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
