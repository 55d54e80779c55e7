"""SessionStore: saves sessions, messages, turns, tool calls and candidates to SQLite.

It takes plain Python records (str, int, float, dict, list; never tensors) so the store can be
used, tested and benchmarked without the model stack. Every write is one transaction, committed
before the method returns: a process killed at any moment leaves the database consistent. A turn
is two writes: `start_turn` (the user's message, with the turn number drawn inside the write
transaction, so concurrent writers of one session get distinct turns) and `finish_turn` (the
answer, its record, tool calls and candidates together: no turn looks complete without its
record). Writers take the write lock up front (`BEGIN IMMEDIATE`) and wait for each other (busy
timeout), so two REPLs writing one database lose nothing. Every string is stored as valid UTF-8
(agent.sessions.text). Opening, and what is refused, is agent.sessions.connection's job.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Any, cast

from agent.safe_text import valid_text

from . import rows, schema, trees
from .connection import DEFAULT_TIMEOUT_S, StoreConnection
from .errors import SessionNotFound, StoreError
from .records import (
    AnswerRecord,
    SearchHit,
    SessionListing,
    SessionRow,
    StoredMessage,
    StoredTree,
    TranscriptTurn,
    TurnRecord,
)

__all__ = ["DEFAULT_TIMEOUT_S", "ROLES", "AnswerRecord", "SessionNotFound", "SessionStore", "StoreError"]

ROLES = ("system", "user", "assistant")


def new_session_id() -> str:
    """12 hex characters: short enough to type, 2^48 ids so collisions are negligible."""
    return secrets.token_hex(6)


class SessionStore(StoreConnection):
    """One open session database. Use `SessionStore.open(path)`; close it (or use `with`)."""

    @classmethod
    def open(cls, path: Path | str, *, timeout: float = DEFAULT_TIMEOUT_S) -> SessionStore:
        """Open (creating if needed) and upgrade the database at `path`.

        Raises StoreError, leaving the file untouched, when it is not a SQLite database, is
        corrupt, belongs to another application, or stays locked longer than `timeout` seconds.
        A database written by a newer version opens read-only (`read_only`, `warning`).
        """
        return cls.connect(path, timeout)

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------- writes

    def create_session(self, model_id: str, weights_hash: str | None, title: str | None = None,
                       system_prompt: str | None = None) -> str:
        """Start a session (with its system prompt as turn 0, in the same transaction); returns its id."""
        if not model_id:
            raise ValueError("create_session: model_id is required")
        values = {"created": rows.now_iso(), "model_id": valid_text(model_id),
                  "weights_hash": weights_hash, "title": None if title is None else valid_text(title)}
        with self.sql_errors():
            for _ in range(5):
                sid = new_session_id()
                try:
                    with self.transaction():
                        self.db.table("sessions").insert({"id": sid, **values})
                        if system_prompt:
                            self._insert_message(sid, 0, "system", system_prompt, False)
                    return sid
                except sqlite3.IntegrityError:
                    continue  # id collision: draw again
            raise StoreError("could not draw a unique session id")

    def _insert_message(self, session_id: str, turn: int, role: str, text: str, interrupted: bool) -> int:
        cur = self.db.execute(
            "INSERT INTO messages (session_id, turn, role, text, created, interrupted) VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, turn, role, valid_text(text), rows.now_iso(), int(bool(interrupted))),
        )
        return int(cur.lastrowid or 0)

    def add_message(
        self, session_id: str, turn: int, role: str, text: str, interrupted: bool = False
    ) -> int:
        """Save one message at a turn given by the caller, committed before returning; returns its id.
        (A conversation uses `start_turn` / `finish_turn`.)"""
        if role not in ROLES:
            raise ValueError(f"add_message: role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(turn, int) or turn < 0:
            raise ValueError(f"add_message: turn must be an integer >= 0, not {turn!r}")
        with self.sql_errors(), self.transaction():
            self._require(session_id)
            return self._insert_message(session_id, turn, role, text, interrupted)

    def start_turn(self, session_id: str, question: str) -> int:
        """Save the user's message under the session's next turn number, drawn inside this write
        transaction (two processes appending to one session get distinct turns); returns the turn.
        An untitled session takes its first question, shortened, as its title."""
        title = rows.short_title(valid_text(question))
        with self.sql_errors(), self.transaction():
            self._require(session_id)
            turn = self._last_turn(session_id) + 1
            self._insert_message(session_id, turn, "user", question, False)
            if title:
                self.db.execute("UPDATE sessions SET title = ? WHERE id = ? AND title IS NULL", (title, session_id))
            return turn

    def finish_turn(self, session_id: str, turn: int, answer: AnswerRecord) -> None:
        """Save a turn's answer: the assistant message, its decoding record, tool calls and
        candidates, in one transaction (all or nothing)."""
        with rows.gc_paused():
            prepared = self._prepare_record(session_id, turn, answer.config, answer.tool_calls, answer.candidates,
                                            answer.timings, answer.token_counts)
            tree = trees.tree_row(session_id, turn, answer.search_tree)
            with self.sql_errors(), self.transaction():
                self._require(session_id)
                self._insert_message(session_id, turn, "assistant", answer.text, answer.interrupted)
                turn_id = self._insert_record(*prepared)
                if tree is not None:
                    self.db.conn.execute(trees.TREE_SQL, (turn_id, *tree))

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
          chosen (default: not speculative), call_text, island_text, output.
        candidates: dicts with text and optionally score, token_count, strategy, parent (index in
          this list), refined, score_before, score_after, grad_steps, accepted, chosen.
        timings: seconds per phase; `total` (or `seconds`) is the turn's wall time.
        token_counts: prompt_tokens, new_tokens, island_tokens, forward_passes, backward_passes
          (any other keys are kept in the JSON column).
        """
        with rows.gc_paused():
            prepared = self._prepare_record(session_id, turn, config, tool_calls, candidates, timings, token_counts)
            with self.sql_errors(), self.transaction():
                self._require(session_id)
                self._insert_record(*prepared)

    @staticmethod
    def _prepare_record(
        session_id: str, turn: int, config: dict[str, Any], tool_calls: list[dict[str, Any]],
        candidates: list[dict[str, Any]], timings: dict[str, Any], token_counts: dict[str, Any],
    ) -> tuple[dict[str, Any], list[tuple], tuple | None]:
        """The rows of a turn record, built (and checked) before the write lock is taken."""
        turn_values = rows.turn_row(session_id, turn, config, timings, token_counts)
        tool_rows = [rows.tool_call_row(session_id, turn, i, call) for i, call in enumerate(tool_calls)]
        return turn_values, tool_rows, rows.candidate_set_row(session_id, turn, candidates)

    def _insert_record(self, turn_values: dict[str, Any], tool_rows: list[tuple], candidate_set: tuple | None) -> int:
        turn_id = int(self.db.table("turns").insert(turn_values).last_pk)
        rows.insert_rows(self.db, "tool_calls", rows.TOOL_CALL_COLUMNS, turn_id, tool_rows)
        if candidate_set is not None:
            self.db.conn.execute(rows.CANDIDATE_SET_SQL, (turn_id, *candidate_set))
        return turn_id

    def undo_turn(self, session_id: str, turn: int) -> None:
        """Take turn `turn` (>= 1) back, as `/undo` and `/retry` do: its messages and record stay, marked
        with the time they were undone, and `history` leaves them out. StoreError when the turn is
        not there or was undone already."""
        if not isinstance(turn, int) or turn < 1:
            raise ValueError(f"undo_turn: turn must be an integer >= 1, not {turn!r}")
        with self.sql_errors(), self.transaction():
            self._require(session_id)
            cur = self.db.execute("UPDATE messages SET undone = ? WHERE session_id = ? AND turn = ? AND undone IS NULL",
                                  (rows.now_iso(), session_id, turn))
            if not cur.rowcount:
                raise StoreError(f"session {session_id} has no turn {turn} to undo (not saved, or undone already)")

    def delete(self, session_id: str) -> None:
        """Delete a session and everything recorded in it."""
        with self.sql_errors(), self.transaction():
            self._require(session_id)
            for table in ("candidate_sets", "tool_calls", "search_trees"):
                self.db.execute(
                    f"DELETE FROM {table} WHERE turn_id IN (SELECT id FROM turns WHERE session_id = ?)",
                    (session_id,),
                )
            for table in ("turns", "messages"):
                self.db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    # -------------------------------------------------------------------- reads

    def _require(self, session_id: str) -> None:
        if self.row("SELECT id FROM sessions WHERE id = ?", (session_id,)) is None:
            raise SessionNotFound(f"no session {session_id!r} in {self.path}")

    def resolve_id(self, prefix: str) -> str:
        """The full id of the one session whose id starts with `prefix` (as typed on the CLI)."""
        prefix = prefix.strip()
        if not prefix:
            raise SessionNotFound("empty session id")
        with self.sql_errors():
            exact = self.row("SELECT id FROM sessions WHERE id = ?", (prefix,))
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
        with self.sql_errors():
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
        with self.sql_errors():
            row = self.row(
                "SELECT id, created, model_id, weights_hash, title FROM sessions WHERE id = ?", (session_id,)
            )
        if row is None:
            raise SessionNotFound(f"no session {session_id!r} in {self.path}")
        return cast(SessionRow, row)

    def messages(self, session_id: str) -> list[StoredMessage]:
        """Messages by turn, in the order written within a turn: id, turn, role, text, created,
        interrupted (bool), undone (when `/undo` took the turn back; None). Two processes writing one
        session at once get distinct turns (`start_turn`), so their messages never interleave."""
        self.get_session(session_id)
        with self.sql_errors():
            found = list(
                self.db.query(
                    "SELECT id, turn, role, text, created, interrupted, undone FROM messages WHERE session_id = ? "
                    "ORDER BY turn, id",
                    (session_id,),
                )
            )
        for message in found:
            message["interrupted"] = bool(message["interrupted"])
        return cast("list[StoredMessage]", found)

    def history(self, session_id: str) -> list[dict[str, str]]:
        """The messages as chat history ({"role", "content"}) to continue a session; undone turns are left out."""
        return [{"role": m["role"], "content": m["text"]} for m in self.messages(session_id) if m["undone"] is None]

    def next_turn(self, session_id: str) -> int:
        """The turn number the next `start_turn` would draw now (turn 0 is the system prompt; first
        turn is 1). Another writer may take it first: `start_turn` draws inside its transaction."""
        self.get_session(session_id)
        with self.sql_errors():
            return self._last_turn(session_id) + 1

    def _last_turn(self, session_id: str) -> int:
        row = self.row(
            "SELECT max(t) AS t FROM (SELECT max(turn) AS t FROM messages WHERE session_id = ? "
            "UNION ALL SELECT max(turn) FROM turns WHERE session_id = ?)",
            (session_id, session_id),
        )
        return int(row["t"]) if row and row["t"] is not None else 0

    def turn_records(self, session_id: str, *, with_candidates: bool = True) -> list[TurnRecord]:
        """Per recorded turn, oldest first: turn, created, strategy, seed, budget, temperature,
        temperatures, grammar_hash, config, timings, seconds, token_counts, tool_calls, candidates
        (empty unless with_candidates) and candidate_stats (count, best_score, refined, accepted)."""
        self.get_session(session_id)
        with self.sql_errors():
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

    def search_tree(self, session_id: str, turn: int) -> StoredTree | None:
        """The token tree turn `turn`'s search explored (its latest record), None when none was stored."""
        self.get_session(session_id)
        with self.sql_errors():
            row = self.row("SELECT t.turn, s.best_node, s.columns FROM search_trees s JOIN turns t ON t.id = s.turn_id "
                           "WHERE t.session_id = ? AND t.turn = ? ORDER BY t.id DESC LIMIT 1", (session_id, turn))
        return None if row is None else trees.tree_out(row["turn"], row["best_node"], row["columns"])

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
        with self.sql_errors():
            query = self.db.quote_fts(valid_text(text))
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
        with self.sql_errors():
            return schema.applied(self.db)
