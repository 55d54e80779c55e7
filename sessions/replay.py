"""Replay a stored session: render it turn by turn, or re-run every turn and compare.

Rendering marks what did not come from the model: tool calls (`SEARCH(...)`, `CALL(...)`) and
their hard islands (`=> ...`) get their own styles and a line per call says what ran. `rerun`
re-executes each turn through a callable (the model stack lives elsewhere: this module never
imports torch) and reports, per turn, identical or a unified diff.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.segment import Segment, Segments
from rich.style import Style

from .store import SessionStore

# run_turn(model_id, history [{"role", "content"}, system included], user_text, config) -> response text
RunTurn = Callable[[str, list[dict[str, str]], str, dict[str, Any]], str]

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

_ISLAND_LINE = re.compile(r"(?m)^=> .*$")
# a call that ends right before an island: NAME( ... ) with JSON-ish strings inside
_CALL_AT_END = re.compile(r'(?:SEARCH|LOAD|CALL)\((?:[^()"]|"(?:[^"\\]|\\.)*")*\)\s*$')


def segments(text: str, tool_calls: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """Split a response into ("text"|"call"|"island", piece) so calls and islands can be marked.

    Islands are found from the stored calls' island text when known, else as lines starting
    with `=> ` (the protocol's island form); the call is the text just before each island.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    for tc in tool_calls or []:
        island = (tc.get("island_text") or "").strip("\n")
        if not island or not tc.get("chosen", True):
            continue
        at = text.find(island, pos)
        if at >= 0:
            spans.append((at, at + len(island)))
            pos = at + len(island)
    if not spans:
        spans = [(m.start(), m.end()) for m in _ISLAND_LINE.finditer(text)]
    out: list[tuple[str, str]] = []
    pos = 0
    for start, end in spans:
        before = text[pos:start]
        call = _CALL_AT_END.search(before)
        if call:
            if call.start():
                out.append(("text", before[: call.start()]))
            out.append(("call", before[call.start():]))
        elif before:
            out.append(("text", before))
        out.append(("island", text[start:end]))
        pos = end
    if pos < len(text):
        out.append(("text", text[pos:]))
    return out


def _lines(text: str) -> list[str]:
    """Lines split at "\n" only (str.splitlines also splits at \r, \x1c, \u2028 ... that models emit)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


def _fmt_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


_STYLES = {name: Style.parse(spec) if spec else None for name, spec in STYLE.items()}
_ROLE_LABEL = {"system": Style.parse("dim bold"), "user": Style.parse("bold"), "assistant": Style.parse("bold")}


# C0 controls (but tab and newline), DEL and C1 controls shown as harmless symbols, so text a model
# or a tool produced can never drive the terminal (escape sequences, carriage returns)
_CONTROLS = {c: 0x2400 + c for c in range(32) if c not in (9, 10)} | {0x7F: 0x2421} | {
    c: 0xFFFD for c in range(0x80, 0xA0)}


def _clean(text: str) -> str:
    return text.translate(_CONTROLS)


def render_turn(t: dict[str, Any], out: list[Segment]) -> None:
    """Append one turn (from `SessionStore.transcript`) to `out` as styled segments."""
    recs = t["records"]
    calls = [tc for r in recs for tc in r["tool_calls"]]
    header = "system" if t["turn"] == 0 else f"turn {t['turn']}"
    meta = []
    for r in recs[-1:]:
        meta.append(f"{r['strategy']} seed={r['seed']}")
        if r.get("seconds") is not None:
            meta.append(f"{r['seconds']:.2f} s")
        new = (r.get("token_counts") or {}).get("new_tokens")
        if new is not None:
            meta.append(f"{new} tokens")
    out.append(Segment(f"── {header} " + ("· " + " · ".join(meta) + " " if meta else "") + "──\n",
                       _STYLES["header"]))
    for m in t["messages"]:
        role = m["role"]
        out.append(Segment(f"{role}: ", _ROLE_LABEL.get(role)))
        if role == "assistant":
            for kind, piece in segments(m["text"], calls):
                out.append(Segment(_clean(piece), _STYLES[kind] if kind != "text" else None))
        else:
            out.append(Segment(_clean(m["text"]), _STYLES.get(role)))
        if m["interrupted"]:
            out.append(Segment("  [interrupted]", _STYLES["interrupted"]))
        out.append(Segment("\n"))
    chosen = [tc for tc in calls if tc["chosen"]]
    for tc in chosen:
        outcome = f"error: {tc['error']}" if tc["error"] else (tc["result"] or "")
        if len(outcome) > 120:
            outcome = outcome[:120] + " ..."
        secs = f" {tc['seconds']:.3f}s" if tc["seconds"] is not None else ""
        kind = "pure" if tc["pure"] else "side effects"
        line = f"  tool call: {tc['tool']}({_fmt_args(tc['args'])}) -> {outcome}{secs} [{kind}]"
        out.append(Segment(_clean(line) + "\n", _STYLES["error"] if tc["error"] else _STYLES["meta"]))
    for r in recs[-1:]:
        st = r["candidate_stats"]
        if st["count"] > 1:
            best = f" · best score {st['best_score']:.3f}" if st["best_score"] is not None else ""
            out.append(Segment(f"  {st['count']} candidates{best} · {st['refined']} refined, "
                               f"{st['accepted']} accepted\n", _STYLES["meta"]))
    speculative = len(calls) - len(chosen)
    if speculative:
        out.append(Segment(f"  (+{speculative} speculative tool call{'s' if speculative > 1 else ''} "
                           "off the chosen path)\n", _STYLES["meta"]))


def render_session(store: SessionStore, session_id: str, console: Console) -> int:
    """Print the session turn by turn; returns the number of turns rendered."""
    sess = store.get_session(session_id)
    out: list[Segment] = [Segment(f"session {sess['id']}", Style(bold=True)),
                          Segment(_clean(f" · {sess['model_id']} · {sess['created']}"), _STYLES["meta"])]
    if sess["title"]:
        out.append(Segment(_clean(f" · {sess['title']}")))
    out.append(Segment("\n"))
    turns = store.transcript(session_id)
    for t in turns:
        render_turn(t, out)
    # pre-styled segments, printed once: no per-line layout work (1000 turns in ~0.1 s)
    console.print(Segments(out), end="")
    return len(turns)


@dataclass
class TurnResult:
    """The outcome of re-running one turn."""

    turn: int
    status: str  # "identical" | "different" | "skipped" | "failed"
    detail: str = ""  # why skipped / failed
    diff: str = ""  # unified diff stored -> rerun, when different

    @property
    def ok(self) -> bool:
        return self.status in ("identical", "skipped")


def rerun(
    store: SessionStore,
    session_id: str,
    run_turn: RunTurn,
    on_result: Callable[[TurnResult], None] | None = None,
) -> list[TurnResult]:
    """Re-execute every turn with the stored model, seed and decoding config; compare texts.

    The history given to turn k is the stored conversation before it (so turns are compared
    independently). Interrupted turns are skipped (their stored text is partial by design);
    a turn without a stored config cannot be re-run and fails.
    """
    sess = store.get_session(session_id)
    history: list[dict[str, str]] = []
    results: list[TurnResult] = []
    for t in store.transcript(session_id):
        msgs = t["messages"]
        users = [m for m in msgs if m["role"] == "user"]
        replies = [m for m in msgs if m["role"] == "assistant"]
        result: TurnResult | None = None
        if t["turn"] == 0 or not users:
            pass
        elif not replies:
            result = TurnResult(t["turn"], "skipped", "no stored response (the turn never completed)")
        elif replies[-1]["interrupted"]:
            result = TurnResult(t["turn"], "skipped", "interrupted: the stored response is partial")
        elif not t["records"]:
            result = TurnResult(t["turn"], "failed", "no decoding configuration stored for this turn")
        else:
            config = t["records"][-1]["config"]
            expected = replies[-1]["text"]
            try:
                actual = run_turn(sess["model_id"], list(history), users[-1]["text"], dict(config))
            except Exception as e:  # the runner's failure is this turn's result, not the end of the replay
                result = TurnResult(t["turn"], "failed", f"{type(e).__name__}: {e}")
            else:
                if actual == expected:
                    result = TurnResult(t["turn"], "identical")
                else:
                    diff = difflib.unified_diff(
                        _lines(expected), _lines(actual),
                        fromfile=f"turn {t['turn']} (stored)", tofile=f"turn {t['turn']} (rerun)",
                    )
                    result = TurnResult(t["turn"], "different", diff="".join(
                        line if line.endswith("\n") else line + "\n" for line in diff))
        if result is not None:
            results.append(result)
            if on_result:
                on_result(result)
        history += [{"role": m["role"], "content": m["text"]} for m in msgs]
    return results
