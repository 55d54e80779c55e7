"""The store's rows: what reads return (typed dicts) and packing records into rows and back.

Writes take plain records (dicts of str, int, float, list; never tensors) and turn them into
tuples in fixed column orders: a 1000-candidate turn must be written in a few milliseconds.
Candidates are packed one row per turn (a JSON object of columns, see `schema.m006_candidate_sets`).
What reads return is typed in `agent.sessions.records`.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlite_utils import Database

from agent.safe_text import valid_text, valid_value

from . import schema
from .records import CandidateStats, StoredCandidate, StoredToolCall, TurnRecord
from .text import text_column


def now_iso() -> str:
    """UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


TITLE_CHARS = 60


def short_title(text: str, limit: int = TITLE_CHARS) -> str:
    """A session title from its first question: one line, at most `limit` characters, cut at a word
    boundary with an ellipsis when it is longer; "" for a blank question."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def dumps(value: Any) -> str:
    # default=str: an odd value (a Path, a numpy scalar) must not lose the whole turn; valid_text:
    # a lone surrogate in a string (kept as it is by ensure_ascii=False) would
    return valid_text(json.dumps(value, ensure_ascii=False, default=str))


def loads(text: str | None, empty: Any) -> Any:
    """The JSON value of a column; `empty` when NULL or unreadable."""
    if text is None:
        return empty
    try:
        return valid_value(json.loads(text))  # "\\ud800" escapes (written by another tool) read as U+FFFD
    except ValueError:
        return empty


def _real(value: Any) -> float | None:
    """A float for a REAL column; NaN becomes NULL (SQLite cannot store NaN)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


# Rows of tool_calls are built as tuples in this column order (turn_id first, filled in at insert time).
TOOL_CALL_COLUMNS = (
    "turn_id", "session_id", "turn", "idx", "tool", "args", "result", "error", "seconds",
    "pure", "speculative", "chosen", "call_text", "island_text", "output",
)
CANDIDATE_SET_SQL = (
    "INSERT INTO candidate_sets (turn_id, session_id, turn, count, best_score, refined, accepted, columns) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_ROWS_PER_STATEMENT = 500  # x 15 columns stays far below SQLite's 32766 bound parameters


@lru_cache(maxsize=32)
def _insert_sql(table: str, columns: tuple[str, ...], row_count: int) -> str:
    """INSERT of row_count rows whose first column is the shared parameter ?1 (the turn id)."""
    width = len(columns) - 1
    groups = []
    for row in range(row_count):
        first = 2 + row * width
        groups.append("(?1," + ",".join(f"?{first + k}" for k in range(width)) + ")")
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {','.join(groups)}"


def insert_rows(db: Database, table: str, columns: tuple[str, ...], turn_id: int, rows: list[tuple]) -> None:
    """Insert rows (all columns but turn_id) with multi-row INSERTs sharing ?1 = turn_id: fewer
    statement steps than executemany, and the flat parameter list is built in C (chain)."""
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        params = [turn_id]
        params.extend(chain.from_iterable(chunk))
        db.conn.execute(_insert_sql(table, columns, len(chunk)), params)


def turn_row(
    session_id: str, turn: int, config: dict[str, Any], timings: dict[str, Any], token_counts: dict[str, Any]
) -> dict[str, Any]:
    """The `turns` row of a turn's decoding config, timings and token counts."""
    if not isinstance(turn, int) or turn < 0:
        raise ValueError(f"record_turn: turn must be an integer >= 0, not {turn!r}")
    temperatures = config.get("temperatures")
    total = timings.get("total", timings.get("seconds"))
    return {
        "session_id": session_id,
        "turn": turn,
        "created": now_iso(),
        "strategy": text_column(config.get("strategy")),
        "seed": _int(config.get("seed")),
        "budget": _int(config.get("budget")),
        "temperature": _real(config.get("temperature")),
        "temperatures": None if temperatures is None else dumps(temperatures),
        "grammar_hash": text_column(config.get("grammar_hash")),
        "config": dumps(config),
        "timings": dumps(timings),
        "seconds": _real(total),
        "token_counts": dumps(token_counts),
        "prompt_tokens": _int(token_counts.get("prompt_tokens")),
        "new_tokens": _int(token_counts.get("new_tokens")),
        "island_tokens": _int(token_counts.get("island_tokens")),
        "forward_passes": _int(token_counts.get("forward_passes")),
        "backward_passes": _int(token_counts.get("backward_passes")),
    }


def tool_call_row(session_id: str, turn: int, idx: int, call: dict[str, Any]) -> tuple:
    """TOOL_CALL_COLUMNS without turn_id."""
    tool = call.get("tool")
    if not tool:
        raise ValueError(f"record_turn: tool call #{idx} has no 'tool' name")
    speculative = bool(call.get("speculative", False))
    return (
        session_id,
        turn,
        idx,
        valid_text(str(tool)),
        dumps(call.get("args", {})),
        text_column(call.get("result")),
        text_column(call.get("error")),
        _real(call.get("seconds")),
        _flag(call.get("pure", True)),
        int(speculative),
        int(bool(call.get("chosen", not speculative))),
        text_column(call.get("call_text") or None),
        text_column(call.get("island_text") or None),
        text_column(call.get("output") or None),
    )


def tool_call_out(row: dict[str, Any]) -> StoredToolCall:
    """A `tool_calls` row as the record it was written from."""
    return StoredToolCall(
        tool=row["tool"],
        args=loads(row["args"], {}),
        result=row["result"],
        error=row["error"],
        seconds=row["seconds"],
        pure=bool(row["pure"]),
        speculative=bool(row["speculative"]),
        chosen=bool(row["chosen"]),
        call_text=row["call_text"],
        island_text=row["island_text"],
        output=row["output"],
    )


_FINITE = 1.7976931348623157e308
_FLOAT_OR_NONE = {float, type(None)}


def _json_real(value: Any) -> float | str | None:
    """A score for the packed JSON rows: NaN -> None, +-inf -> "inf"/"-inf" (JSON has no infinity)."""
    number = _real(value)
    if number is None or -_FINITE <= number <= _FINITE:
        return number
    return "inf" if number > 0 else "-inf"


def _finite_or_tagged(values: list[Any]) -> list[Any]:
    """Scores for JSON: real floats pass as they are (the common case, checked in one sweep)."""
    kinds = set(map(type, values))
    if kinds <= _FLOAT_OR_NONE:
        present = values if type(None) not in kinds else [v for v in values if v is not None]
        if math.isfinite(sum(present)):  # no inf or nan (a finite sum that overflows takes the slow path)
            return values
    return [None if v is None else _json_real(v) for v in values]


def _ints(values: list[Any]) -> list[int | None]:
    return [None if v is None else int(v) for v in values]


def candidate_set_row(session_id: str, turn: int, candidates: list[dict[str, Any]]) -> tuple | None:
    """The candidate_sets row (without turn_id) of a turn's candidates; None when there are none.

    Column by column (schema.CANDIDATE_FIELDS -> one JSON array each): list comprehensions and one
    json.dumps are a few milliseconds for a thousand candidates.
    """
    if not candidates:
        return None
    texts = [c.get("text") for c in candidates]
    if None in texts:
        raise ValueError(f"record_turn: candidate #{texts.index(None)} has no 'text'")
    scores = _finite_or_tagged([c.get("score") for c in candidates])
    refined = [1 if c.get("refined") else 0 for c in candidates]
    accepted = [None if (a := c.get("accepted")) is None else int(bool(a)) for c in candidates]
    columns = {
        "parent_idx": _ints([c.get("parent") for c in candidates]),
        "text": [valid_text(t if type(t) is str else str(t)) for t in texts],
        "score": scores,
        "token_count": _ints([c.get("token_count") for c in candidates]),
        "strategy": [text_column(c.get("strategy")) for c in candidates],
        "refined": refined,
        "score_before": _finite_or_tagged([c.get("score_before") for c in candidates]),
        "score_after": _finite_or_tagged([c.get("score_after") for c in candidates]),
        "grad_steps": _ints([c.get("grad_steps") for c in candidates]),
        "accepted": accepted,
        "chosen": [1 if c.get("chosen") else 0 for c in candidates],
    }
    best = max((float(v) for v in scores if v is not None), default=None)
    return (session_id, turn, len(texts), best, sum(refined), sum(a or 0 for a in accepted),
            json.dumps(columns, allow_nan=False))


def _score_out(value: Any) -> float | None:
    return float(value) if isinstance(value, str) else value


def candidates_out(packed: str) -> list[StoredCandidate]:
    """The candidates of a candidate_sets row's `columns`, in idx order."""
    columns = json.loads(packed)
    for name in ("text", "strategy"):  # the string columns: escaped lone surrogates read as U+FFFD
        columns[name] = [valid_text(v) if isinstance(v, str) else v for v in columns[name]]
    return [
        StoredCandidate(
            idx=idx,
            parent=parent,
            text=text,
            score=_score_out(score),
            token_count=tokens,
            strategy=strategy,
            refined=bool(refined),
            score_before=_score_out(before),
            score_after=_score_out(after),
            grad_steps=steps,
            accepted=None if accepted is None else bool(accepted),
            chosen=bool(chosen),
        )
        for idx, (parent, text, score, tokens, strategy, refined, before, after, steps, accepted, chosen)
        in enumerate(zip(*(columns[f] for f in schema.CANDIDATE_FIELDS), strict=True))
    ]


def stats_out(row: dict[str, Any] | None) -> CandidateStats:
    """The summary columns of a candidate_sets row (zeros for a turn without candidates)."""
    if row is None:
        return CandidateStats(count=0, best_score=None, refined=0, accepted=0)
    return CandidateStats(count=row["count"], best_score=row["best_score"], refined=row["refined"],
                          accepted=row["accepted"])


def turn_record_out(row: dict[str, Any], tool_calls: list[StoredToolCall], candidates: list[StoredCandidate],
                    stats: CandidateStats) -> TurnRecord:
    """A `turns` row with its tool calls and candidates, as `SessionStore.turn_records` returns it."""
    return TurnRecord(
        turn=row["turn"],
        created=row["created"],
        strategy=row["strategy"],
        seed=row["seed"],
        budget=row["budget"],
        temperature=row["temperature"],
        temperatures=loads(row["temperatures"], None),
        grammar_hash=row["grammar_hash"],
        config=loads(row["config"], {}),
        timings=loads(row["timings"], {}),
        seconds=row["seconds"],
        token_counts=loads(row["token_counts"], {}),
        tool_calls=tool_calls,
        candidates=candidates,
        candidate_stats=stats,
    )


def group_by_turn_id(rows: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["turn_id"], []).append(row)
    return grouped


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a turn's thousands of values are built and
    written: a collection landing mid-write was the slowest 1% of turns (p99 22 ms -> 19 ms)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
