"""Export a stored session as JSON (complete, exact, machine-readable) or Markdown (for reading).

The Markdown is for people and for renderers: control characters show as symbols (`printable`, the
terminal's sanitiser, so `cat chat.md` cannot drive a terminal), the heading is plain text (HTML
and Markdown syntax in a title are escaped), messages sit in code fences longer than any backtick
run in them. The JSON export keeps every stored character as it is.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.safe_text import printable

from .records import TurnRecord
from .replay import recorded_tool_sources
from .store import SessionStore
from .summary import candidates_line, code_span, tool_call_line, tool_source_lines

FORMATS = ("json", "markdown")
EXPORT_FORMAT = "agent-session"
EXPORT_VERSION = 1


def export_dict(store: SessionStore, session_id: str) -> dict[str, Any]:
    """Everything stored for a session: metadata, messages, and per turn the decoding config,
    timings, token counts, tool calls and candidates."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "session": store.get_session(session_id),
        "messages": store.messages(session_id),
        "turns": store.turn_records(session_id, with_candidates=True),
    }


def export_json(store: SessionStore, session_id: str) -> str:
    return json.dumps(export_dict(store, session_id), ensure_ascii=False, indent=2) + "\n"


# What Markdown (or HTML inside it) could read as syntax in a line of text: backslash-escaped.
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")


def markdown_text(text: str) -> str:
    """`text` as literal inline Markdown on one line: whitespace runs become one space, controls
    show as symbols, and `<script>`, `[a](b)`, `*x*`, `&lt;` stay the characters they are."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", printable(" ".join(text.split())))


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in `text`, so the text is kept verbatim."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _config_line(record: TurnRecord) -> str:
    parts = [f"strategy {record.get('strategy')}", f"seed {record.get('seed')}"]
    if record.get("temperature") is not None:
        parts.append(f"temperature {record['temperature']:g}")
    if record.get("budget") is not None:
        parts.append(f"budget {record['budget']}")
    if record.get("grammar_hash"):
        parts.append(f"grammar {record['grammar_hash'][:12]}")
    if record.get("seconds") is not None:
        parts.append(f"{record['seconds']:.2f} s")
    new = (record.get("token_counts") or {}).get("new_tokens")
    if new is not None:
        parts.append(f"{new} new tokens")
    return "*" + " · ".join(parts) + "*"


def export_markdown(store: SessionStore, session_id: str) -> str:
    """A readable transcript: turns, messages as written (islands `=> ...` included; controls shown
    as symbols), tool calls, the decoding configuration and the candidates' best scores."""
    session = store.get_session(session_id)
    transcript = store.transcript(session_id, with_candidates=True)
    first_question = next((m["text"] for t in transcript for m in t["messages"] if m["role"] == "user"), "")
    heading = session["title"] or " ".join(first_question.split())[:60] or f"Session {session['id']}"
    out = [f"# {markdown_text(heading)}", ""]
    out.append(f"- session: {code_span(session['id'])}")
    weights = f" (weights {code_span(session['weights_hash'])})" if session["weights_hash"] else ""
    out.append(f"- model: {code_span(session['model_id'])}{weights}")
    out.append(f"- started: {session['created']}")
    out += [f"- {markdown_text(line)}" for line in tool_source_lines(recorded_tool_sources(store, session_id))]
    out.append("")
    for turn in transcript:
        out.append("## System" if turn["turn"] == 0 else f"## Turn {turn['turn']}")
        out.append("")
        for message in turn["messages"]:
            label = f"**{message['role']}**" + (" *(interrupted)*" if message["interrupted"] else "")
            label += " *(undone)*" if message.get("undone") else ""
            fence = _fence(message["text"])
            out += [label, "", fence + "text", message["text"], fence, ""]
        for record in turn["records"]:
            out.append(_config_line(record))
            out.append("")
            if record["tool_calls"]:
                out.append("Tool calls:")
                out.append("")
                out += [tool_call_line(call, markdown=True) for call in record["tool_calls"]]
                out.append("")
            if record["candidate_stats"]["count"]:
                out.append(candidates_line(record["candidate_stats"], markdown=True))
                out.append("")
    return printable("\n".join(out).rstrip() + "\n")


def export_session(store: SessionStore, session_id: str, fmt: str) -> str:
    """The session in one of FORMATS."""
    if fmt == "json":
        return export_json(store, session_id)
    if fmt == "markdown":
        return export_markdown(store, session_id)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
