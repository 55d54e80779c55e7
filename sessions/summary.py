"""One-line plain-text summaries of a stored turn: a tool call, and the candidates a search weighed.

The one home of these lines: `agent.render` prints the terminal form (`agent sessions show`,
`agent replay`), `agent.sessions.export` writes the markdown form. No terminal, no rich here;
the caller filters control characters where the line goes to a terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from agent.safe_text import printable
from agent.tooling.origin import read_sources

from .records import CandidateStats, StoredToolCall

TERMINAL_OUTCOME_LIMIT = 120
MARKDOWN_OUTCOME_LIMIT = 200


def call_expression(call: Mapping[str, Any], *, markdown: bool = False) -> str:
    """`tool(name=value, ...)` of a stored call (or a search tree node's): values as Python literals, or as
    JSON in markdown."""
    show = _json_value if markdown else repr
    return f"{call['tool']}({', '.join(f'{name}={show(value)}' for name, value in call['args'].items())})"


def call_outcome(call: Mapping[str, Any], limit: int) -> str:
    """The result, or `error: ...`, cut at `limit` characters (then ` ...`)."""
    outcome = f"error: {call['error']}" if call["error"] else (call["result"] or "")
    return outcome[:limit] + " ..." if len(outcome) > limit else outcome


def code_span(text: str) -> str:
    """`text` as an inline code span that no backtick in it can close early."""
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{printable(text.replace(chr(10), ' '))}{pad}{fence}"


def tool_call_line(call: StoredToolCall, *, markdown: bool = False) -> str:
    """One line for a tool call: what ran, what came back, how long, pure or with side effects.

    Terminal: ``tool call: search(query='x') -> result 0.003s [pure]``.
    Markdown: ``- `search(query="x")` → `result` (0.003 s, pure)`` plus speculative / off-path flags.
    """
    kind = "pure" if call["pure"] else "side effects"
    if not markdown:
        seconds = f" {call['seconds']:.3f}s" if call["seconds"] is not None else ""
        return f"tool call: {call_expression(call)} -> {call_outcome(call, TERMINAL_OUTCOME_LIMIT)}{seconds} [{kind}]"
    flags = [f"{call['seconds']:.3f} s" if call["seconds"] is not None else None,
             kind,
             "speculative" if call["speculative"] else None,
             None if call["chosen"] else "not on the chosen path"]
    # code spans no backtick in a value can close, so nothing in a call or a result is read as Markdown
    expression = code_span(call_expression(call, markdown=True))
    outcome = code_span(call_outcome(call, MARKDOWN_OUTCOME_LIMIT))
    return f"- {expression} → {outcome} ({', '.join(flag for flag in flags if flag)})"


def candidates_line(stats: CandidateStats, *, markdown: bool = False) -> str:
    """One line for a turn's candidates: how many, the best score, how many refined and accepted.

    Terminal: ``2 candidates · best score -0.500 · 0 refined, 0 accepted``.
    Markdown: ``2 candidates, best score -0.5000; 0 refined, 0 accepted.``
    """
    best_score = stats["best_score"]
    refinement = f"{stats['refined']} refined, {stats['accepted']} accepted"
    if markdown:
        best = f", best score {best_score:.4f}" if best_score is not None else ""
        return f"{stats['count']} candidates{best}; {refinement}."
    best = f" · best score {best_score:.3f}" if best_score is not None else ""
    return f"{stats['count']} candidates{best} · {refinement}"


def _json_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def tool_source_lines(entries: list[dict[str, Any]]) -> list[str]:
    """One line per source of a session's tools (`agent sessions show`, the markdown export), in first-use
    order: ``tools from MCP server /usr/bin/python -m mcp_server_time (mcp-time 1.26.0): get_current_time``."""
    by_source: dict[str, list[str]] = {}
    for name, origin in read_sources(entries):
        names = by_source.setdefault(origin.describe(), [])
        if name not in names:
            names.append(name)
    return [f"tools from {source}: {', '.join(names)}" for source, names in by_source.items()]
