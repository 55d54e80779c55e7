"""SessionStore: saves sessions, messages, turns, tool calls and candidates to SQLite.

It takes plain Python records (str, int, float, dict, list; never tensors) so the store can be
used, tested and benchmarked without the model stack. Every write is its own transaction,
committed before the method returns: a process killed at any moment leaves the database
consistent and every message whose `add_message` returned intact (WAL mode; SQLite's
atomic commit). Writers take the write lock up front (`BEGIN IMMEDIATE`) and wait for each
other (busy timeout), so two REPLs writing one database lose nothing.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlite_utils import Database

from . import rows, schema
from .checkpoint import Checkpointer
from .errors import SessionNotFound, StoreError, check_header, explain
from .records import SearchHit, SessionListing, SessionRow, StoredMessage, TranscriptTurn, TurnRecord

__all__ = ["DEFAULT_TIMEOUT_S", "ROLES", "SessionNotFound", "SessionStore", "StoreError"]

ROLES = ("system", "user", "assistant")
DEFAULT_TIMEOUT_S = 15.0


def new_session_id() -> str:
    """12 hex characters: short enough to type, 2^48 ids so collisions are negligible."""
    return secrets.token_hex(6)


class SessionStore:
    """One open session database. Use `SessionStore.open(path)`; close it (or use `with`)."""

    def __init__(self, db: Database, path: Path, timeout: float) -> None:
        self.db = db
        self.path = path
        self.timeout = timeout
        # one connection, possibly used from a REPL thread and a generation thread: one call at a time
        self.lock = threading.RLock()
        self._checkpointer: Checkpointer | None = None  # started once the schema is ready

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path | str, *, timeout: float = DEFAULT_TIMEOUT_S) -> SessionStore:
        """Open (creating if needed) and upgrade the database at `path`.

        Raises StoreError, leaving the file untouched, when it is not a SQLite database, is
        corrupt, belongs to another application, or stays locked longer than `timeout` seconds.
        """
        path = Path(path).expanduser()
        check_header(path)
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
            raise explain(e, path, timeout) from e
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
        self._checkpointer = Checkpointer(self.path, self.timeout)
        self._checkpointer.start()

    def close(self) -> None:
        """Stop the checkpointer and close; the last connection to close checkpoints the WAL."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.db.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    @contextmanager
    def _sql_errors(self) -> Iterator[None]:
        """Hold the store's lock; turn sqlite3 errors into StoreError with the file named and a hint."""
        try:
            with self.lock:
                yield
        except sqlite3.Error as e:
            raise explain(e, self.path, self.timeout) from e

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
        if self._checkpointer is not None:
            self._checkpointer.wake()

    def _row(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        # plain cursor: a read needs no savepoint guard (db.query's), and this runs on every write
        cur = self.db.conn.execute(sql, params)
        row = cur.fetchone()
        return None if row is None else dict(zip((d[0] for d in cur.description), row, strict=True))

    # ------------------------------------------------------------------- writes

    def create_session(self, model_id: str, weights_hash: str | None, title: str | None = None) -> str:
        """Start a session; returns its id."""
        if not model_id:
            raise ValueError("create_session: model_id is required")
        with self._sql_errors():
            for _ in range(5):
                sid = new_session_id()
                try:
                    with self._transaction():
                        self.db.table("sessions").insert({"id": sid, "created": rows.now_iso(), "model_id": model_id,
                                                          "weights_hash": weights_hash, "title": title})
                    return sid
                except sqlite3.IntegrityError:
                    continue  # id collision: draw again
            raise StoreError("could not draw a unique session id")

    def add_message(
        self, session_id: str, turn: int, role: str, text: str, interrupted: bool = False
    ) -> int:
        """Save one completed (or interrupted) message, committed before returning; returns its id."""
        if role not in ROLES:
            raise ValueError(f"add_message: role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(turn, int) or turn < 0:
            raise ValueError(f"add_message: turn must be an integer >= 0, not {turn!r}")
        with self._sql_errors(), self._transaction():
            self._require(session_id)
            cur = self.db.execute(
                "INSERT INTO messages (session_id, turn, role, text, created, interrupted) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, turn, role, text, rows.now_iso(), int(bool(interrupted))),
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
        with rows.gc_paused():
            turn_values = rows.turn_row(session_id, turn, config, timings, token_counts)
            tool_rows = [rows.tool_call_row(session_id, turn, i, call) for i, call in enumerate(tool_calls)]
            candidate_set = rows.candidate_set_row(session_id, turn, candidates)
            with self._sql_errors(), self._transaction():
                self._require(session_id)
                turn_id = self.db.table("turns").insert(turn_values).last_pk
                rows.insert_rows(self.db, "tool_calls", rows.TOOL_CALL_COLUMNS, turn_id, tool_rows)
                if candidate_set is not None:
                    self.db.conn.execute(rows.CANDIDATE_SET_SQL, (turn_id, *candidate_set))

    def delete(self, session_id: str) -> None:
        """Delete a session and everything recorded in it."""
        with self._sql_errors(), self._transaction():
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
        with self._sql_errors():
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

    def list_sessions(self) -> list[SessionListing]:
        """All sessions, newest first: id, created, updated, model_id, weights_hash, title, turns, messages."""
        with self._sql_errors():
            return cast("list[SessionListing]", list(
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
            ))

    def get_session(self, session_id: str) -> SessionRow:
        """The session row (id, created, model_id, weights_hash, title); SessionNotFound if absent."""
        with self._sql_errors():
            row = self._row(
                "SELECT id, created, model_id, weights_hash, title FROM sessions WHERE id = ?", (session_id,)
            )
        if row is None:
            raise SessionNotFound(f"no session {session_id!r} in {self.path}")
        return cast(SessionRow, row)

    def messages(self, session_id: str) -> list[StoredMessage]:
        """Messages in the order written: id, turn, role, text, created, interrupted (bool)."""
        self.get_session(session_id)
        with self._sql_errors():
            found = list(
                self.db.query(
                    "SELECT id, turn, role, text, created, interrupted FROM messages WHERE session_id = ? ORDER BY id",
                    (session_id,),
                )
            )
        for message in found:
            message["interrupted"] = bool(message["interrupted"])
        return cast("list[StoredMessage]", found)

    def history(self, session_id: str) -> list[dict[str, str]]:
        """The messages as chat history ({"role", "content"}) to continue a session."""
        return [{"role": m["role"], "content": m["text"]} for m in self.messages(session_id)]

    def next_turn(self, session_id: str) -> int:
        """The turn number for the next user message (turn 0 is the system prompt; first turn is 1)."""
        self.get_session(session_id)
        with self._sql_errors():
            row = self._row(
                "SELECT max(t) AS t FROM (SELECT max(turn) AS t FROM messages WHERE session_id = ? "
                "UNION ALL SELECT max(turn) FROM turns WHERE session_id = ?)",
                (session_id, session_id),
            )
        last = row["t"] if row and row["t"] is not None else 0
        return int(last) + 1

    def turn_records(self, session_id: str, *, with_candidates: bool = True) -> list[TurnRecord]:
        """Per recorded turn, oldest first: turn, created, strategy, seed, budget, temperature,
        temperatures, grammar_hash, config, timings, seconds, token_counts, tool_calls, candidates
        (empty unless with_candidates) and candidate_stats (count, best_score, refined, accepted)."""
        self.get_session(session_id)
        with self._sql_errors():
            turns = list(
                self.db.query("SELECT * FROM turns WHERE session_id = ? ORDER BY turn, id", (session_id,))
            )
            calls = rows.group_by_turn_id(
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
        return [
            rows.turn_record_out(
                t,
                [rows.tool_call_out(r) for r in calls.get(t["id"], [])],
                rows.candidates_out(sets[t["id"]]["columns"]) if with_candidates and t["id"] in sets else [],
                rows.stats_out(sets.get(t["id"])),
            )
            for t in turns
        ]

    def transcript(self, session_id: str, *, with_candidates: bool = False) -> list[TranscriptTurn]:
        """The session grouped by turn, oldest first: {"turn", "messages", "records"} where
        records are this turn's `turn_records` (usually one; turn 0 holds the system prompt)."""
        records = self.turn_records(session_id, with_candidates=with_candidates)
        by_turn: dict[int, TranscriptTurn] = {}
        for m in self.messages(session_id):
            by_turn.setdefault(m["turn"], TranscriptTurn(turn=m["turn"], messages=[], records=[]))["messages"].append(m)
        for r in records:
            by_turn.setdefault(r["turn"], TranscriptTurn(turn=r["turn"], messages=[], records=[]))["records"].append(r)
        return [by_turn[k] for k in sorted(by_turn)]

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Messages matching `text` (full-text, words as typed), best first:
        session_id, message_id, turn, role, text, created, model_id, title."""
        if not text.strip():
            return []
        with self._sql_errors():
            query = self.db.quote_fts(text)
            return cast("list[SearchHit]", list(
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
            ))

    def schema_version(self) -> list[str]:
        """Names of the applied migrations."""
        with self._sql_errors():
            return schema.applied(self.db)
