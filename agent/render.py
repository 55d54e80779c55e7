"""Everything rich draws: answers' summary lines, /alts, /tree, tool and session listings, stored sessions.

Model, tool and user text reaches the terminal only through `printable` (control characters shown
as harmless symbols) and only as `rich.text.Text` (never parsed as markup, so `[/x]` in a response
prints as it is). The plain one-line forms of a stored tool call and a turn's candidates come from
`agent.sessions.summary`, shared with the markdown export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from rich.console import Console
from rich.segment import Segment, Segments
from rich.style import Style
from rich.table import Table
from rich.text import Text

from agent.safe_text import printable
from agent.sessions.records import SessionListing, StoredToolCall, TranscriptTurn
from agent.sessions.replay import recorded_tool_sources
from agent.sessions.summary import candidates_line, tool_call_line, tool_source_lines

if TYPE_CHECKING:

    from agent.decoding.results import SearchResult
    from agent.sessions.store import SessionStore
    from agent.tooling.registry import ToolRegistry
    from agent.tools.kb import Listed

# What JSON written with ensure_ascii=False may still carry raw: DEL, C1 controls, lone surrogates
_JSON_RAW = re.compile("[\x7f-\x9f\ud800-\udfff]")


def terminal_json(value: object) -> str:
    """`value` as JSON safe to print: the same data (C0 controls escaped by JSON itself, DEL, C1
    controls and lone surrogates as `\\uXXXX` escapes), other characters as they are."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


def plain(text: str, style: str = "") -> Text:
    """Model, tool or user text as a rich Text: controls made printable, no markup parsed."""
    return Text(printable(text), style=style)


def one_line(text: str, width: int = 80) -> str:
    """`text` flattened to one line (newlines shown as ⏎) and cut at `width` characters."""
    flat = text.replace("\n", "⏎ ")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Answers: the search summary, /alts, /tree


def summary_line(result: SearchResult) -> str:
    """One line after each searched answer: candidates, passes, best score, refinement gain."""
    plural = "" if len(result.candidates) == 1 else "s"
    backward = f" + {result.backward_passes} backward" if result.backward_passes else ""
    parts = [
        f"{result.strategy or result.best.strategy}: {len(result.candidates)} candidate{plural}",
        f"{result.forward_passes} forward{backward} passes",
        f"best score {result.best.score:.3f}/token",
    ]
    refinement = result.refinement or {}
    if refinement.get("tried"):
        parts.append(f"refined {refinement['improved']}/{refinement['tried']} improved, "
                     f"mean gain {refinement['mean_gain']:+.3f}")
    parts.append(f"{result.seconds:.2f}s")
    return " · ".join(parts)


def render_alts(result: SearchResult) -> Table:
    """The candidates of the last answer as a table, best first (for `/alts`)."""
    table = Table(title=plain(f"candidates ({result.strategy or result.best.strategy})"), show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("how")
    table.add_column("text")
    for index, candidate in enumerate(result.candidates):
        how = candidate.strategy
        if candidate.refined:
            verdict = "accepted" if candidate.accepted else "rejected"
            how += (f" (refined from #{candidate.parent}, {candidate.score_before:.3f}→{candidate.score_after:.3f}, "
                    f"{verdict})")
        flags = " [empty]" if candidate.empty else (" [loop]" if candidate.degenerate else "")
        marker = "*" if candidate is result.best else ""
        table.add_row(f"{marker}{index}", f"{candidate.score:.3f}", str(candidate.new_tokens), plain(how + flags),
                      plain(one_line(candidate.text)))
    return table


# ---------------------------------------------------------------------------------------------
# Listings: tools and sessions


def tools_table(registry: ToolRegistry) -> Table:
    """`agent tools list`: call form, description, pure or asking, timeout, and where the tool comes from
    (builtin, a file, an entry point, a JSON file and what runs it, an MCP server). The source is cut
    to its width, never wrapped: the description keeps the room."""
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column, justify in (("call", "left"), ("description", "left"), ("pure", "left"), ("timeout", "right")):
        table.add_column(column, justify=justify, min_width=30 if column == "description" else None)
    table.add_column("source", no_wrap=True, overflow="ellipsis", max_width=32)
    for spec in registry:
        table.add_row(plain(spec.call_signature), plain(spec.description), "yes" if spec.pure else "no (asks)",
                      f"{spec.timeout:g}s", plain(spec.source))
    return table


def tool_lines(registry: ToolRegistry) -> Text:
    """The REPL's `/tools`: one line per tool, its call form and description."""
    return plain("\n".join(f"  {spec.call_signature} - {spec.description}" for spec in registry))


def model_label(model_id: str) -> str:
    """A model as a listing shows it: `demo` for the shipped model, a local folder by its name (the full
    path ate the width of a terminal), a hub id as it is."""
    from agent import demo_model  # importlib.resources: only when a listing is drawn

    if demo_model.is_demo_model(model_id):
        return "demo"
    if model_id.startswith(("/", "~", ".")) or "\\" in model_id:
        return model_id.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or model_id
    return model_id


def _listing_cells(row: SessionListing) -> list[str]:
    """id, started, model, turns, title of one listed session, each one printable line (no tabs)."""
    cells = [row["id"], row["created"][:16].replace("T", " "), model_label(row["model_id"]), str(row["turns"]),
             row["title"] or ""]
    return [" ".join(printable(cell).replace("\t", " ").split()) for cell in cells]


def sessions_table(sessions: Iterable[SessionListing]) -> Table:
    """`agent sessions list` on a terminal: id, start, model, turns, title (or first question), one line
    per session; the title is cut with an ellipsis where the terminal ends (80 columns fit)."""
    rows = [_listing_cells(row) for row in sessions]
    table = Table(box=None, pad_edge=False)
    for index, column in enumerate(("id", "started", "model", "turns", "title")):
        # id, started and turns are never cut (min_width: their widest cell); the model takes at most 20
        # columns; the title takes the rest and is cut with an ellipsis
        widest = max([len(column), *(len(cells[index]) for cells in rows)])
        least = {"title": min(widest, 10), "model": min(widest, 20)}.get(column, widest)
        table.add_column(column, overflow="ellipsis", no_wrap=True, min_width=least,
                         max_width=20 if column == "model" else None)
    for cells in rows:
        table.add_row(*(Text(cell) for cell in cells))
    return table


def sessions_tsv(sessions: Iterable[SessionListing]) -> str:
    """`agent sessions list` to a pipe: a header, then one tab-separated line per session (grep, cut, awk)."""
    lines = ["id\tstarted\tmodel\tturns\ttitle"]
    lines += ["\t".join(_listing_cells(row)) for row in sessions]
    return "\n".join(lines)


def _kb_cells(doc: Listed) -> list[str]:
    """id, characters, title, source file of one stored document, each one printable line (no tabs)."""
    cells = [str(doc.id), str(doc.chars), doc.title, doc.path or "(shipped)"]
    return [" ".join(printable(cell).replace("\t", " ").split()) for cell in cells]


def kb_table(docs: Iterable[Listed]) -> Table:
    """`agent kb list` on a terminal: one line per document; the title and the path are cut with an ellipsis."""
    table = Table(box=None, pad_edge=False)
    for column in ("id", "chars", "title", "source"):
        table.add_column(column, overflow="ellipsis", no_wrap=True,
                         justify="left" if column in ("title", "source") else "right")
    for cells in (_kb_cells(doc) for doc in docs):
        table.add_row(*(Text(cell) for cell in cells))
    return table


def kb_tsv(docs: Iterable[Listed]) -> str:
    """`agent kb list` to a pipe: a header, then one tab-separated line per document."""
    return "\n".join(["id\tchars\ttitle\tsource", *("\t".join(_kb_cells(doc)) for doc in docs)])


def session_lines(sessions: Iterable[SessionListing]) -> Text:
    """The REPL's `/sessions`: id, start and title, one line each."""
    return plain("\n".join(f"  {row['id']}  {row['created']}  {row['title'] or ''}" for row in sessions))


# ---------------------------------------------------------------------------------------------
# A stored session, turn by turn (`agent sessions show`, `agent replay`)

STYLE = {
    "header": "bold cyan",
    "system": "dim",
    "user": "bold",
    "assistant": "",
    "call": "bold yellow",
    "island": "green",
    "interrupted": "bold red",
    "meta": "dim",
    "error": "red",
}
_STYLES = {name: Style.parse(spec) if spec else None for name, spec in STYLE.items()}
_ROLE_LABEL = {"system": Style.parse("dim bold"), "user": Style.parse("bold"), "assistant": Style.parse("bold")}

SegmentKind = Literal["text", "call", "island"]


def segments(text: str, tool_calls: Sequence[StoredToolCall]) -> list[tuple[SegmentKind, str]]:
    """Split a response into ("text"|"call"|"island", piece) so calls and islands can be marked.

    The calls are the chosen stored calls' `call_text`, found in order; the island is the stored
    `island_text` right after it (the newline between them goes with the call). A call stored
    without its text (an older row) stays plain text: nothing is guessed from the response.
    """
    pieces: list[tuple[SegmentKind, str]] = []
    position = 0
    for call in tool_calls:
        call_text = call["call_text"]
        if not call["chosen"] or not call_text:
            continue
        start = text.find(call_text, position)
        if start < 0:
            continue
        end = start + len(call_text)
        island = (call["island_text"] or "").strip("\n")
        island_at = text.find(island, end) if island else -1
        if start > position:
            pieces.append(("text", text[position:start]))
        if island_at >= 0 and not text[end:island_at].strip():
            pieces += [("call", text[start:island_at]), ("island", island)]
            position = island_at + len(island)
        else:
            pieces.append(("call", call_text))
            position = end
    if position < len(text):
        pieces.append(("text", text[position:]))
    return pieces


def _line(text: str, style: str) -> Segment:
    return Segment(printable(text) + "\n", _STYLES[style])


def render_turn(turn: TranscriptTurn, out: list[Segment]) -> None:
    """Append one turn (from `SessionStore.transcript`) to `out` as styled segments."""
    records = turn["records"]
    calls = [call for record in records for call in record["tool_calls"]]
    meta = []
    for record in records[-1:]:
        meta.append(f"{record['strategy']} seed={record['seed']}")
        if record["seconds"] is not None:
            meta.append(f"{record['seconds']:.2f} s")
        new_tokens = record["token_counts"].get("new_tokens")
        if new_tokens is not None:
            meta.append(f"{new_tokens} tokens")
    header = "system" if turn["turn"] == 0 else f"turn {turn['turn']}"
    out.append(Segment(printable(f"── {header} " + ("· " + " · ".join(meta) + " " if meta else "") + "──\n"),
                       _STYLES["header"]))
    for message in turn["messages"]:
        role = message["role"]
        out.append(Segment(printable(f"{role}: "), _ROLE_LABEL.get(role)))
        if role == "assistant":
            for kind, piece in segments(message["text"], calls):
                out.append(Segment(printable(piece), _STYLES[kind] if kind != "text" else None))
        else:
            out.append(Segment(printable(message["text"]), _STYLES.get(role)))
        if message["interrupted"]:
            out.append(Segment("  [interrupted]", _STYLES["interrupted"]))
        if message.get("undone"):
            out.append(Segment("  [undone]", _STYLES["meta"]))
        out.append(Segment("\n"))
    chosen = [call for call in calls if call["chosen"]]
    for call in chosen:
        out.append(_line("  " + tool_call_line(call), "error" if call["error"] else "meta"))
    for record in records[-1:]:
        if record["candidate_stats"]["count"] > 1:
            out.append(_line("  " + candidates_line(record["candidate_stats"]), "meta"))
    speculative = len(calls) - len(chosen)
    if speculative:
        out.append(_line(f"  (+{speculative} speculative tool call{'s' if speculative > 1 else ''} "
                         "off the chosen path)", "meta"))


def render_session(store: SessionStore, session_id: str, console: Console) -> int:
    """Print the session turn by turn; returns the number of turns rendered."""
    session = store.get_session(session_id)
    out: list[Segment] = [Segment(printable(f"session {session['id']}"), Style(bold=True)),
                          Segment(printable(f" · {session['model_id']} · {session['created']}"), _STYLES["meta"])]
    if session["title"]:
        out.append(Segment(printable(f" · {session['title']}")))
    out.append(Segment("\n"))
    out += [_line("  " + line, "meta") for line in tool_source_lines(recorded_tool_sources(store, session_id))]
    turns = store.transcript(session_id)
    for turn in turns:
        render_turn(turn, out)
    # pre-styled segments, printed once: no per-line layout work (1000 turns in ~0.1 s)
    console.print(Segments(out), end="")
    return len(turns)


def snippet(text: str, width: int = 100) -> str:
    """A message on one line (runs of whitespace as one space), cut at `width` characters."""
    flat = " ".join(text.split())
    return printable(flat[:width] + " ..." if len(flat) > width else flat)
