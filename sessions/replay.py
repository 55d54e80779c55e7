"""Re-run a stored session: re-execute every turn and compare it with what was stored.

`rerun` re-executes each turn through a callable (the model stack lives elsewhere: this module
never imports torch) and reports, per turn, identical or a unified diff. Showing a stored session
is `agent.render.render_session`'s job. A session file is data: the tool files it names are never
imported from it; a re-run takes them from the command line and matches them to the recorded ones.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .store import SessionStore

RerunStatus = Literal["identical", "different", "skipped", "failed"]

# run_turn(model_id, history [{"role", "content"}, system included], user_text, config) -> response text
RunTurn = Callable[[str, list[dict[str, str]], str, dict[str, Any]], str]


class MissingToolFiles(ValueError):
    """A session recorded tool files that were not given on the command line (`--tools`)."""


def recorded_tool_files(store: SessionStore, session_id: str) -> list[str]:
    """Every tool file the session's turns recorded, in first-use order (paths as stored: data, never imported)."""
    found: dict[str, None] = {}
    for record in store.turn_records(session_id, with_candidates=False):
        for name in record["config"].get("tool_files") or []:
            found[str(name)] = None
    return list(found)


def recorded_tool_sources(store: SessionStore, session_id: str) -> list[dict[str, Any]]:
    """Every tool source the session's turns recorded (`{"tool": name, "kind": ..., ...}`), each once, in
    first-use order; none for sessions stored before sources were recorded (or without tools)."""
    found: dict[str, dict[str, Any]] = {}
    for record in store.turn_records(session_id, with_candidates=False):
        for entry in record["config"].get("tool_sources") or []:
            if isinstance(entry, dict):
                found.setdefault(json.dumps(entry, sort_keys=True), entry)
    return list(found.values())


def given_for(recorded: str, given: list[Path]) -> Path | None:
    """The given file standing for a recorded one: the same file, else the only one of the same name
    (a session recorded in another directory, or before paths were recorded resolved)."""
    target = Path(recorded)
    same = [g for g in given if g.resolve() == target]
    if same:
        return same[0]
    named = [g for g in given if g.name == target.name]
    return named[0] if len(named) == 1 else None


def missing_tool_files(recorded: list[str], given: tuple[str, ...] | list[str]) -> list[str]:
    """The recorded tool files that no given file stands for."""
    paths = [Path(g).expanduser() for g in given]
    return [name for name in recorded if given_for(name, paths) is None]


def tool_files_for_rerun(recorded: list[str], given: tuple[str, ...] | list[str]) -> list[str]:
    """The given files to import for a turn that recorded `recorded`: only those (so the turn sees the
    tools it had). MissingToolFiles names each recorded file that was not given; nothing is imported
    from the session itself."""
    missing = missing_tool_files(recorded, given)
    if missing:
        raise MissingToolFiles(
            f"this session used tool files not given: {', '.join(missing)}; re-run with --tools FILE for "
            "each (it imports them, which runs their code)")
    paths = [Path(g).expanduser() for g in given]
    return [str(given_for(name, paths)) for name in recorded]


def _lines(text: str) -> list[str]:
    """Lines split at "\n" only (str.splitlines also splits at \r, \x1c, \u2028 ... that models emit)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


@dataclass
class RerunOutcome:
    """The outcome of re-running one turn."""

    turn: int
    status: RerunStatus
    detail: str = ""  # why skipped / failed
    diff: str = ""  # unified diff stored -> rerun, when different

    @property
    def ok(self) -> bool:
        return self.status in ("identical", "skipped")


def rerun(
    store: SessionStore,
    session_id: str,
    run_turn: RunTurn,
    on_result: Callable[[RerunOutcome], None] | None = None,
) -> list[RerunOutcome]:
    """Re-execute every turn with the stored model, seed and decoding config; compare texts.

    The history given to turn k is the stored conversation before it (so turns are compared
    independently). Interrupted turns are skipped (their stored text is partial by design);
    a turn without a stored config cannot be re-run and fails.
    """
    model_id = store.get_session(session_id)["model_id"]
    history: list[dict[str, str]] = []
    outcomes: list[RerunOutcome] = []
    for turn in store.transcript(session_id):
        number, messages = turn["turn"], turn["messages"]
        questions = [m for m in messages if m["role"] == "user"]
        replies = [m for m in messages if m["role"] == "assistant"]
        outcome: RerunOutcome | None = None
        if number == 0 or not questions:
            pass
        elif not replies:
            outcome = RerunOutcome(number, "skipped", "no stored response (the turn never completed)")
        elif replies[-1]["interrupted"]:
            outcome = RerunOutcome(number, "skipped", "interrupted: the stored response is partial")
        elif not turn["records"]:
            outcome = RerunOutcome(number, "failed", "no decoding configuration stored for this turn")
        else:
            config = turn["records"][-1]["config"]
            expected = replies[-1]["text"]
            try:
                actual = run_turn(model_id, list(history), questions[-1]["text"], dict(config))
            except Exception as e:  # the runner's failure is this turn's outcome, not the end of the replay
                outcome = RerunOutcome(number, "failed", f"{type(e).__name__}: {e}")
            else:
                outcome = _compare(number, expected, actual)
        if outcome is not None:
            outcomes.append(outcome)
            if on_result:
                on_result(outcome)
        # an undone turn was not in the conversation the later turns saw
        history += [{"role": m["role"], "content": m["text"]} for m in messages if m.get("undone") is None]
    return outcomes


def _compare(number: int, expected: str, actual: str) -> RerunOutcome:
    if actual == expected:
        return RerunOutcome(number, "identical")
    diff = difflib.unified_diff(_lines(expected), _lines(actual),
                                fromfile=f"turn {number} (stored)", tofile=f"turn {number} (rerun)")
    return RerunOutcome(number, "different", diff="".join(line if line.endswith("\n") else line + "\n"
                                                         for line in diff))
