"""SessionStore: saves sessions, messages, turns, tool calls and candidates to SQLite.

It takes plain Python records (str, int, float, dict, list; never tensors) so the store can be
used, tested and benchmarked without the model stack. Every write is its own transaction,
committed before the method returns: a process killed at any moment leaves the database
consistent and every message whose `add_message` returned intact (WAL mode; SQLite's
atomic commit). Writers take the write lock up front (`BEGIN IMMEDIATE`) and wait for each
other (busy timeout), so two REPLs writing one database lose nothing.
"""

from __future__ import annotations

import gc
import json
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from . import schema

ROLES = ("system", "user", "assistant")
SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_TIMEOUT_S = 15.0


class StoreError(Exception):
    """A session database problem, worded for the user (names the file and what to do)."""


class SessionNotFound(StoreError, KeyError):
    """No session matches the id (or id prefix) given (a KeyError too, for `except KeyError`)."""

    __str__ = Exception.__str__  # KeyError would show the message in quotes


def now_iso() -> str:
    """UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_session_id() -> str:
    """12 hex characters: short enough to type, 2^48 ids so collisions are negligible."""
    return secrets.token_hex(6)


def _dumps(value: Any) -> str:
    # default=str: an odd value (a Path, a numpy scalar) must not lose the whole turn
    return json.dumps(value, ensure_ascii=False, default=str)


def _loads(text: str | None, empty: Any) -> Any:
    if text is None:
        return empty
    try:
        return json.loads(text)
    except ValueError:
        return empty


def _real(value: Any) -> float | None:
    """A float for a REAL column; NaN becomes NULL (SQLite cannot store NaN)."""
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


class SessionStore:
    """One open session database. Use `SessionStore.open(path)`; close it (or use `with`)."""

    def __init__(self, db: Database, path: Path, timeout: float) -> None:
        self.db = db
        self.path = path
        self.timeout = timeout
        # one connection, possibly used from a REPL thread and a generation thread: one call at a time
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path | str, *, timeout: float = DEFAULT_TIMEOUT_S) -> "SessionStore":
        """Open (creating if needed) and upgrade the database at `path`.

        Raises StoreError, leaving the file untouched, when it is not a SQLite database, is
        corrupt, belongs to another application, or stays locked longer than `timeout` seconds.
        """
        path = Path(path).expanduser()
        _check_header(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open session database {path}: {e}") from e
        db = Database(conn)
        store = cls(db, path, timeout)
        try:
            store._prepare()
        except sqlite3.Error as e:
            conn.close()
            raise store._error(e) from e
        except BaseException:
            conn.close()
            raise
        return store

    def _prepare(self) -> None:
        tables = set(self.db.table_names())
        if tables and schema.MIGRATIONS_TABLE not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database of another application (tables: "
                f"{', '.join(sorted(tables)[:5])}); it was left untouched. Pass --db with another path."
            )
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.enable_wal()
        # NORMAL is durable against process crashes in WAL mode (only power loss can undo the
        # last commits, never corrupt); FULL would fsync on every message.
        self.db.execute("PRAGMA synchronous = NORMAL")
        if schema.pending(self.db):
            with self._transaction():  # a second process opening at once waits, then sees them applied
                schema.migrations.apply(self.db)
        # Checkpoints (copying the WAL into the database, with fsyncs) run on a background thread,
        # not inside a turn's commit: they were the whole p99 of a turn's write time.
        self.db.execute("PRAGMA wal_autocheckpoint = 0")
        self._checkpointer = _Checkpointer(self.path, self.timeout)
        self._checkpointer.start()

    def close(self) -> None:
        """Stop the checkpointer and close; the last connection to close checkpoints the WAL."""
        checkpointer = getattr(self, "_checkpointer", None)
        if checkpointer is not None:
            checkpointer.stop()
        self.db.close()

    def __enter__(self) -> "SessionStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _error(self, e: sqlite3.Error) -> StoreError:
        msg = str(e)
        low = msg.lower()
        if "locked" in low or "busy" in low:
            return StoreError(
                f"session database {self.path} is locked by another process (waited {self.timeout:g} s); "
                "close the other program or try again"
            )
        if isinstance(e, sqlite3.DatabaseError) and (
            "not a database" in low or "malformed" in low or "corrupt" in low
        ):
            return StoreError(
                f"session database {self.path} is corrupt ({msg}); it was left untouched. "
                "Move it aside (or pass --db with another path) to start a new one"
            )
        return StoreError(f"session database {self.path}: {msg}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction holding the write lock from its start (no upgrade deadlocks)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as e:
                # the busy timeout already waited; retry while time is left (e.g. a WAL reset)
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        try:
            self.db.conn.execute("COMMIT")
        except BaseException:
            self.db.rollback()
            raise
        checkpointer = getattr(self, "_checkpointer", None)
        if checkpointer is not None:
            checkpointer.wake()

    def _row(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        # plain cursor: a read needs no savepoint guard (db.query's), and this runs on every write
        cur = self.db.conn.execute(sql, params)
        row = cur.fetchone()
        return None if row is None else dict(zip((d[0] for d in cur.description), row))

    # ------------------------------------------------------------------- writes

    def create_session(self, model_id: str, weights_hash: str | None, title: str | None = None) -> str:
        """Start a session; returns its id."""
        if not model_id:
            raise ValueError("create_session: model_id is required")
        with _sql_errors(self):
            for _ in range(5):
                sid = new_session_id()
                try:
                    with self._transaction():
                        self.db.table("sessions").insert(
                            {
                                "id": sid,
                                "created": now_iso(),
                                "model_id": model_id,
                                "weights_hash": weights_hash,
                                "title": title,
                            }
                        )
                    return sid
                except sqlite3.IntegrityError:
                    continue  # id collision: draw again
            raise StoreError("could not draw a unique session id")

    def set_title(self, session_id: str, title: str | None) -> None:
        with _sql_errors(self), self._transaction():
            self._require(session_id)
            self.db.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id))

    def add_message(
        self, session_id: str, turn: int, role: str, text: str, interrupted: bool = False
    ) -> int:
        """Save one completed (or interrupted) message, committed before returning; returns its id."""
        if role not in ROLES:
            raise ValueError(f"add_message: role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(turn, int) or turn < 0:
            raise ValueError(f"add_message: turn must be an integer >= 0, not {turn!r}")
        with _sql_errors(self), self._transaction():
            self._require(session_id)
            cur = self.db.execute(
                "INSERT INTO messages (session_id, turn, role, text, created, interrupted) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, turn, role, text, now_iso(), int(bool(interrupted))),
            )
            return int(cur.lastrowid or 0)

    def record_turn(
        self,
        session_id: str,
        turn: int,
        *,
        config: dict[str, Any],
        tool_calls: list[dict[str, Any]],
        candidates: list[dict[str, Any]],
        timings: dict[str, Any],
        token_counts: dict[str, Any],
    ) -> None:
        """Save a turn's decoding config, tool calls, candidates, timings and counts in one transaction.

        config: DecodeConfig.to_dict() (any extra keys are kept; `temperatures` may hold a schedule).
        tool_calls: dicts with tool, args, result, error, seconds, pure, speculative and optionally
          chosen (default: not speculative), call_text, island_text.
        candidates: dicts with text and optionally score, token_count, strategy, parent (index in
          this list), refined, score_before, score_after, grad_steps, accepted, chosen.
        timings: seconds per phase; `total` (or `seconds`) is the turn's wall time.
        token_counts: prompt_tokens, new_tokens, island_tokens, forward_passes, backward_passes
          (any other keys are kept in the JSON column).
        """
        with _gc_paused():
            turn_row = _turn_row(session_id, turn, config, timings, token_counts)
            tool_rows = [_tool_row(session_id, turn, i, tc) for i, tc in enumerate(tool_calls)]
            cand_set = _candidate_set(session_id, turn, candidates)
            with _sql_errors(self), self._transaction():
                self._require(session_id)
                turn_id = self.db.table("turns").insert(turn_row).last_pk
                _insert_rows(self.db, "tool_calls", TOOL_CALL_COLUMNS, turn_id, tool_rows)
                if cand_set is not None:
                    self.db.conn.execute(_CANDIDATE_SET_SQL, (turn_id, *cand_set))

    def delete(self, session_id: str) -> None:
        """Delete a session and everything recorded in it."""
        with _sql_errors(self), self._transaction():
            self._require(session_id)
            for table in ("candidate_sets", "tool_calls"):
                self.db.execute(
                    f"DELETE FROM {table} WHERE turn_id IN (SELECT id FROM turns WHERE session_id = ?)",
                    (session_id,),
                )
            for table in ("turns", "messages"):
                self.db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    # -------------------------------------------------------------------- reads

    def _require(self, session_id: str) -> None:
        if self._row("SELECT id FROM sessions WHERE id = ?", (session_id,)) is None:
            raise SessionNotFound(f"no session {session_id!r} in {self.path}")

    def resolve_id(self, prefix: str) -> str:
        """The full id of the one session whose id starts with `prefix` (as typed on the CLI)."""
        prefix = prefix.strip()
        if not prefix:
            raise SessionNotFound("empty session id")
        with _sql_errors(self):
            exact = self._row("SELECT id FROM sessions WHERE id = ?", (prefix,))
            if exact:
                return str(exact["id"])
            pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            ids = [
                r["id"]
                for r in self.db.query(
                    "SELECT id FROM sessions WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 6", (pattern,)
                )
            ]
        if not ids:
            raise SessionNotFound(f"no session matches {prefix!r} in {self.path}")
        if len(ids) > 1:
            raise SessionNotFound(
                f"session id {prefix!r} is ambiguous: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}"
            )
        return str(ids[0])

    def list_sessions(self) -> list[dict[str, Any]]:
        """All sessions, newest first: id, created, updated, model_id, weights_hash, title, turns, messages."""
        with _sql_errors(self):
            return list(
                self.db.query(
                    """
                    SELECT s.id, s.created, s.model_id, s.weights_hash,
                           coalesce(s.title, (SELECT substr(m.text, 1, 60) FROM messages m
                                              WHERE m.session_id = s.id AND m.role = 'user'
                                              ORDER BY m.id LIMIT 1)) AS title,
                           (SELECT count(DISTINCT m.turn) FROM messages m
                            WHERE m.session_id = s.id AND m.role = 'user') AS turns,
                           (SELECT count(*) FROM messages m WHERE m.session_id = s.id) AS messages,
                           coalesce((SELECT max(m.created) FROM messages m WHERE m.session_id = s.id),
                                    s.created) AS updated
                    FROM sessions s
                    ORDER BY s.created DESC, s.rowid DESC
                    """
                )
            )

    def get_session(self, session_id: str) -> dict[str, Any]:
        """The session row (id, created, model_id, weights_hash, title); SessionNotFound if absent."""
        with _sql_errors(self):
            row = self._row(
                "SELECT id, created, model_id, weights_hash, title FROM sessions WHERE id = ?", (session_id,)
            )
        if row is None:
            raise SessionNotFound(f"no session {session_id!r} in {self.path}")
        return row

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        """Messages in the order written: id, turn, role, text, created, interrupted (bool)."""
        self.get_session(session_id)
        with _sql_errors(self):
            rows = list(
                self.db.query(
                    "SELECT id, turn, role, text, created, interrupted FROM messages "
                    "WHERE session_id = ? ORDER BY id",
                    (session_id,),
                )
            )
        for r in rows:
            r["interrupted"] = bool(r["interrupted"])
        return rows

    def history(self, session_id: str) -> list[dict[str, str]]:
        """The messages as chat history ({"role", "content"}) to continue a session."""
        return [{"role": m["role"], "content": m["text"]} for m in self.messages(session_id)]

    def next_turn(self, session_id: str) -> int:
        """The turn number for the next user message (turn 0 is the system prompt; first turn is 1)."""
        self.get_session(session_id)
        with _sql_errors(self):
            row = self._row(
                "SELECT max(t) AS t FROM (SELECT max(turn) AS t FROM messages WHERE session_id = ? "
                "UNION ALL SELECT max(turn) FROM turns WHERE session_id = ?)",
                (session_id, session_id),
            )
        last = row["t"] if row and row["t"] is not None else 0
        return int(last) + 1

    def turn_records(self, session_id: str, *, with_candidates: bool = True) -> list[dict[str, Any]]:
        """Per recorded turn, oldest first: turn, created, strategy, seed, budget, temperature,
        temperatures, grammar_hash, config, timings, seconds, token_counts, tool_calls, candidates
        (empty unless with_candidates) and candidate_stats (count, best_score, refined, accepted)."""
        self.get_session(session_id)
        with _sql_errors(self):
            turns = list(
                self.db.query("SELECT * FROM turns WHERE session_id = ? ORDER BY turn, id", (session_id,))
            )
            calls = _group(
                self.db.query(
                    "SELECT * FROM tool_calls WHERE turn_id IN (SELECT id FROM turns WHERE session_id = ?) "
                    "ORDER BY turn_id, idx", (session_id,)
                )
            )
            sets = {
                r["turn_id"]: r
                for r in self.db.query(
                    f"SELECT turn_id, count, best_score, refined, accepted{', columns' if with_candidates else ''} "
                    "FROM candidate_sets WHERE turn_id IN (SELECT id FROM turns WHERE session_id = ?)",
                    (session_id,),
                )
            }
        stats = {k: {f: r[f] for f in ("count", "best_score", "refined", "accepted")} for k, r in sets.items()}
        cands = {k: _candidates_out(r["columns"]) for k, r in sets.items()} if with_candidates else {}
        empty_stats = {"count": 0, "best_score": None, "refined": 0, "accepted": 0}
        out = []
        for t in turns:
            out.append(
                {
                    "turn": t["turn"],
                    "created": t["created"],
                    "strategy": t["strategy"],
                    "seed": t["seed"],
                    "budget": t["budget"],
                    "temperature": t["temperature"],
                    "temperatures": _loads(t["temperatures"], None),
                    "grammar_hash": t["grammar_hash"],
                    "config": _loads(t["config"], {}),
                    "timings": _loads(t["timings"], {}),
                    "seconds": t["seconds"],
                    "token_counts": _loads(t["token_counts"], {}),
                    "tool_calls": [_tool_out(r) for r in calls.get(t["id"], [])],
                    "candidates": cands.get(t["id"], []),
                    "candidate_stats": stats.get(t["id"], empty_stats),
                }
            )
        return out

    def transcript(self, session_id: str, *, with_candidates: bool = False) -> list[dict[str, Any]]:
        """The session grouped by turn, oldest first: {"turn", "messages", "records"} where
        records are this turn's `turn_records` (usually one; turn 0 holds the system prompt)."""
        records = self.turn_records(session_id, with_candidates=with_candidates)
        by_turn: dict[int, dict[str, Any]] = {}
        for m in self.messages(session_id):
            by_turn.setdefault(m["turn"], {"turn": m["turn"], "messages": [], "records": []})["messages"].append(m)
        for r in records:
            by_turn.setdefault(r["turn"], {"turn": r["turn"], "messages": [], "records": []})["records"].append(r)
        return [by_turn[k] for k in sorted(by_turn)]

    def search(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Messages matching `text` (full-text, words as typed), best first:
        session_id, message_id, turn, role, text, created, model_id, title."""
        if not text.strip():
            return []
        with _sql_errors(self):
            query = self.db.quote_fts(text)
            return list(
                self.db.query(
                    """
                    SELECT m.session_id, m.id AS message_id, m.turn, m.role, m.text, m.created,
                           s.model_id, s.title
                    FROM messages_fts
                    JOIN messages m ON m.rowid = messages_fts.rowid
                    JOIN sessions s ON s.id = m.session_id
                    WHERE messages_fts MATCH ?
                    ORDER BY messages_fts.rank
                    LIMIT ?
                    """,
                    (query, limit),
                )
            )

    def schema_version(self) -> list[str]:
        """Names of the applied migrations."""
        with _sql_errors(self):
            return schema.applied(self.db)


# ------------------------------------------------------------------ row building


class _Checkpointer(threading.Thread):
    """Runs PASSIVE WAL checkpoints on its own connection after writes, at most every `interval` s.

    PASSIVE never blocks writers or readers; a process killed mid-checkpoint is safe (SQLite
    replays or ignores the WAL on the next open).
    """

    def __init__(self, path: Path, timeout: float, interval: float = 0.5) -> None:
        super().__init__(name=f"checkpoint {path.name}", daemon=True)
        self.path = path
        self.timeout = timeout
        self.interval = interval
        self._wake = threading.Event()
        self._halt = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        self.join(timeout=self.timeout)

    def run(self) -> None:
        conn = sqlite3.connect(str(self.path), timeout=self.timeout)
        try:
            while True:
                self._wake.wait()
                if self._halt.is_set():
                    return
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # a busy or failing checkpoint is retried after the next write
                if self._halt.wait(self.interval):  # coalesce bursts of writes into one checkpoint
                    return
        finally:
            conn.close()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a turn's thousands of values are built and
    written: a collection landing mid-write was the slowest 1% of turns (p99 22 ms -> 19 ms)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _sql_errors(store: SessionStore) -> Iterator[None]:
    """Hold the store's lock; turn sqlite3 errors into StoreError with the file named and a hint."""
    try:
        with store.lock:
            yield
    except sqlite3.Error as e:
        raise store._error(e) from e


# Rows of tool_calls / candidates are built as tuples in these column orders (turn_id first,
# filled in at insert time): a 1000-candidate turn must be written in a few milliseconds.
TOOL_CALL_COLUMNS = (
    "turn_id", "session_id", "turn", "idx", "tool", "args", "result", "error", "seconds",
    "pure", "speculative", "chosen", "call_text", "island_text",
)
_CANDIDATE_SET_SQL = (
    "INSERT INTO candidate_sets (turn_id, session_id, turn, count, best_score, refined, accepted, columns) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_ROWS_PER_STATEMENT = 500  # x 14 columns stays far below SQLite's 32766 bound parameters


@lru_cache(maxsize=32)
def _insert_sql(table: str, columns: tuple[str, ...], n_rows: int) -> str:
    """INSERT of n_rows rows whose first column is the shared parameter ?1 (the turn id)."""
    width = len(columns) - 1
    groups = []
    for r in range(n_rows):
        first = 2 + r * width
        groups.append("(?1," + ",".join(f"?{first + k}" for k in range(width)) + ")")
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {','.join(groups)}"


def _insert_rows(db: Database, table: str, columns: tuple[str, ...], turn_id: int, rows: list[tuple]) -> None:
    """Insert rows (all columns but turn_id) with multi-row INSERTs sharing ?1 = turn_id: fewer
    statement steps than executemany, and the flat parameter list is built in C (chain)."""
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        params = [turn_id]
        params.extend(chain.from_iterable(chunk))
        db.conn.execute(_insert_sql(table, columns, len(chunk)), params)


def _turn_row(
    session_id: str, turn: int, config: dict[str, Any], timings: dict[str, Any], token_counts: dict[str, Any]
) -> dict[str, Any]:
    if not isinstance(turn, int) or turn < 0:
        raise ValueError(f"record_turn: turn must be an integer >= 0, not {turn!r}")
    temps = config.get("temperatures")
    total = timings.get("total", timings.get("seconds"))
    return {
        "session_id": session_id,
        "turn": turn,
        "created": now_iso(),
        "strategy": config.get("strategy"),
        "seed": _int(config.get("seed")),
        "budget": _int(config.get("budget")),
        "temperature": _real(config.get("temperature")),
        "temperatures": None if temps is None else _dumps(temps),
        "grammar_hash": config.get("grammar_hash"),
        "config": _dumps(config),
        "timings": _dumps(timings),
        "seconds": _real(total),
        "token_counts": _dumps(token_counts),
        "prompt_tokens": _int(token_counts.get("prompt_tokens")),
        "new_tokens": _int(token_counts.get("new_tokens")),
        "island_tokens": _int(token_counts.get("island_tokens")),
        "forward_passes": _int(token_counts.get("forward_passes")),
        "backward_passes": _int(token_counts.get("backward_passes")),
    }


def _tool_row(session_id: str, turn: int, idx: int, tc: dict[str, Any]) -> tuple:
    """TOOL_CALL_COLUMNS without turn_id."""
    tool = tc.get("tool")
    if not tool:
        raise ValueError(f"record_turn: tool call #{idx} has no 'tool' name")
    speculative = bool(tc.get("speculative", False))
    return (
        session_id,
        turn,
        idx,
        str(tool),
        _dumps(tc.get("args", {})),
        tc.get("result"),
        tc.get("error"),
        _real(tc.get("seconds")),
        _flag(tc.get("pure", True)),
        int(speculative),
        int(bool(tc.get("chosen", not speculative))),
        tc.get("call_text") or None,
        tc.get("island_text") or None,
    )


_FINITE = 1.7976931348623157e308
_FLOAT_OR_NONE = {float, type(None)}


def _json_real(value: Any) -> float | str | None:
    """A score for the packed JSON rows: NaN -> None, +-inf -> "inf"/"-inf" (JSON has no infinity)."""
    f = _real(value)
    if f is None or -_FINITE <= f <= _FINITE:
        return f
    return "inf" if f > 0 else "-inf"


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


def _candidate_set(session_id: str, turn: int, candidates: list[dict[str, Any]]) -> tuple | None:
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
        "text": [t if type(t) is str else str(t) for t in texts],
        "score": scores,
        "token_count": _ints([c.get("token_count") for c in candidates]),
        "strategy": [c.get("strategy") for c in candidates],
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


def _candidates_out(packed: str) -> list[dict[str, Any]]:
    """The candidate dicts of a candidate_sets row, in idx order."""
    cols = json.loads(packed)
    return [
        {
            "idx": idx,
            "parent": parent,
            "text": text,
            "score": _score_out(score),
            "token_count": tokens,
            "strategy": strategy,
            "refined": bool(refined),
            "score_before": _score_out(before),
            "score_after": _score_out(after),
            "grad_steps": steps,
            "accepted": None if accepted is None else bool(accepted),
            "chosen": bool(chosen),
        }
        for idx, (parent, text, score, tokens, strategy, refined, before, after, steps, accepted, chosen)
        in enumerate(zip(*(cols[f] for f in schema.CANDIDATE_FIELDS)))
    ]


def _group(rows: Any) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["turn_id"], []).append(r)
    return out


def _tool_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool": r["tool"],
        "args": _loads(r["args"], {}),
        "result": r["result"],
        "error": r["error"],
        "seconds": r["seconds"],
        "pure": bool(r["pure"]),
        "speculative": bool(r["speculative"]),
        "chosen": bool(r["chosen"]),
        "call_text": r["call_text"],
        "island_text": r["island_text"],
    }


def _check_header(path: Path) -> None:
    """Refuse a non-SQLite file before SQLite touches it (an empty file is a new database)."""
    if path.is_dir():
        raise StoreError(f"session database {path} is a directory; pass --db with a file path")
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(f"cannot read session database {path}: {e}") from e
    if head and head != SQLITE_HEADER[: len(head)] or 0 < len(head) < len(SQLITE_HEADER):
        raise StoreError(
            f"{path} is not a SQLite database (it starts with {head[:16]!r}); it was left untouched. "
            "Pass --db with another path"
        )

