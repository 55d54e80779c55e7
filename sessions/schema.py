"""The session database schema, as an append-only list of small named migrations.

Each migration is one step, applied once, in order, and recorded in the `_migrations` table
(sqlite-utils' `Migrations`), so a database made by any earlier version upgrades cleanly.
Never edit or reorder a migration that has shipped: add a new one at the end.

Tables (all readable with any SQLite tool):
- `sessions`: id, created, model_id, weights_hash, title
- `messages`: one row per message as it completes (session_id, turn, role, text, created,
  interrupted, undone: when `/undo` or `/retry` took the turn back); full-text indexed in `messages_fts`
- `turns`: the decoding configuration, timings and token counts of each turn
- `tool_calls`: every tool call of a turn (speculative ones too) with its result or error
- `tool_calls.output`: what the tool printed (stdout and stderr, captured), when it printed anything
- `search_trees`: the token tree a turn's search explored (nodes packed as JSON columns)
- `candidate_sets`: the responses a turn's search considered, with scores and refinement data,
  one row per turn (summary columns + a JSON object of columns); the view `candidates` shows them
  one row per candidate
"""

from __future__ import annotations

import json
import math

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .identity import APPLICATION_ID, MIGRATION_SET, MIGRATIONS_TABLE

__all__ = ["MIGRATIONS_TABLE", "all_names", "applied", "migrations", "pending"]


class _SessionMigrations(Migrations):
    """sqlite-utils migrations recorded in our own `_migrations` table."""

    migrations_table = MIGRATIONS_TABLE


migrations = _SessionMigrations(MIGRATION_SET)


@migrations()
def m001_initial(db: Database) -> None:
    """Sessions and their messages: the first schema version (see tests/fixtures/sessions_v1.sqlite)."""
    db.table("sessions").create(
        {"id": str, "created": str, "model_id": str, "weights_hash": str, "title": str},
        pk="id",
        not_null={"created", "model_id"},
    )
    db.table("messages").create(
        {
            "id": int,
            "session_id": str,
            "turn": int,
            "role": str,
            "text": str,
            "created": str,
            "interrupted": int,
        },
        pk="id",
        not_null={"session_id", "turn", "role", "text", "created"},
        defaults={"interrupted": 0},
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db.table("messages").create_index(["session_id", "turn"])


@migrations()
def m002_turns(db: Database) -> None:
    """The decoding configuration, timings and token counts of each turn."""
    db.table("turns").create(
        {
            "id": int,
            "session_id": str,
            "turn": int,
            "created": str,
            "strategy": str,
            "seed": int,
            "budget": int,
            "temperature": float,
            "temperatures": str,  # JSON list: the annealing schedule, when the strategy has one
            "grammar_hash": str,
            "config": str,  # JSON: the whole DecodeConfig
            "timings": str,  # JSON: seconds per phase
            "seconds": float,  # wall time of the turn
            "token_counts": str,  # JSON: everything counted
            "prompt_tokens": int,
            "new_tokens": int,
            "island_tokens": int,
            "forward_passes": int,
            "backward_passes": int,
        },
        pk="id",
        not_null={"session_id", "turn", "created", "config"},
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db.table("turns").create_index(["session_id", "turn"])


@migrations()
def m003_tool_calls(db: Database) -> None:
    """Tool calls and their islands, speculative ones included."""
    db.table("tool_calls").create(
        {
            "id": int,
            "turn_id": int,
            "session_id": str,
            "turn": int,
            "idx": int,  # order within the turn
            "tool": str,
            "args": str,  # JSON object
            "result": str,
            "error": str,
            "seconds": float,
            "pure": int,
            "speculative": int,
            "chosen": int,  # on the path of the chosen response
            "call_text": str,
            "island_text": str,
        },
        pk="id",
        not_null={"turn_id", "session_id", "turn", "idx", "tool", "args"},
        # session_id/turn are copies for ad-hoc SQL; turn_id is the link (one index, one FK check per row)
        foreign_keys=[("turn_id", "turns", "id")],
    )
    db.table("tool_calls").create_index(["turn_id"])


@migrations()
def m004_candidates(db: Database) -> None:
    """Every candidate response a turn's search scored, and how refinement changed it."""
    db.table("candidates").create(
        {
            "id": int,
            "turn_id": int,
            "session_id": str,
            "turn": int,
            "idx": int,  # position within the turn
            "parent_idx": int,  # idx of the candidate this one was refined from
            "text": str,
            "score": float,  # exact log-likelihood score (length-normalised as the scorer says)
            "token_count": int,
            "strategy": str,
            "refined": int,
            "score_before": float,
            "score_after": float,
            "grad_steps": int,
            "accepted": int,  # refinement replaced its parent
            "chosen": int,  # this candidate became the response
        },
        pk="id",
        not_null={"turn_id", "session_id", "turn", "idx", "text"},
        foreign_keys=[("turn_id", "turns", "id")],
    )
    db.table("candidates").create_index(["turn_id"])


@migrations()
def m005_messages_fts(db: Database) -> None:
    """Full-text search over messages, kept current by triggers (existing rows are indexed)."""
    db.table("messages").enable_fts(["text"], fts_version="FTS5", create_triggers=True)


CANDIDATE_FIELDS = ("parent_idx", "text", "score", "token_count", "strategy", "refined", "score_before",
                    "score_after", "grad_steps", "accepted", "chosen")


@migrations()
def m006_candidate_sets(db: Database) -> None:
    """Candidates packed one row per turn: a search writes up to thousands at once and they are
    always read per turn, so one row (a JSON object of columns: {"text": [...], "score": [...], ...})
    replaces a thousand row inserts (the p99 of a turn's write). The `candidates` view unpacks them."""
    db.table("candidate_sets").create(
        {
            "turn_id": int,
            "session_id": str,
            "turn": int,
            "count": int,
            "best_score": float,  # max score (NULL when no candidate has one)
            "refined": int,  # candidates made by refinement
            "accepted": int,  # refinements that replaced their parent
            "columns": str,  # JSON: {field: [value per candidate in idx order]} for CANDIDATE_FIELDS
        },
        pk="turn_id",
        not_null={"session_id", "turn", "count", "columns"},
        foreign_keys=[("turn_id", "turns", "id")],
    )
    def json_score(value: float | None) -> float | str | None:
        # JSON has no infinity: the store writes infinite scores as "inf" / "-inf"
        return value if value is None or math.isfinite(value) else ("inf" if value > 0 else "-inf")

    scored = ("score", "score_before", "score_after")
    by_turn: dict[int, list[dict]] = {}
    for r in db.query("SELECT * FROM candidates ORDER BY turn_id, idx"):
        by_turn.setdefault(r["turn_id"], []).append(r)
    for turn_id, rows in by_turn.items():
        scores = [r["score"] for r in rows if r["score"] is not None]
        db.table("candidate_sets").insert({
            "turn_id": turn_id, "session_id": rows[0]["session_id"], "turn": rows[0]["turn"], "count": len(rows),
            "best_score": max(scores) if scores else None, "refined": sum(r["refined"] or 0 for r in rows),
            "accepted": sum(r["accepted"] or 0 for r in rows),
            "columns": json.dumps({f: [json_score(r[f]) if f in scored else r[f] for r in rows]
                                   for f in CANDIDATE_FIELDS}, allow_nan=False),
        })
    db.table("candidates").drop()
    # Infinite scores are stored as the strings "inf" / "-inf" (JSON has no infinity).
    fields = ", ".join(f"json_extract(s.columns, '$.{name}[' || j.key || ']') AS {name}"
                       for name in CANDIDATE_FIELDS if name != "text")
    db.execute(
        "CREATE VIEW candidates AS SELECT s.turn_id, s.session_id, s.turn, j.key AS idx, j.value AS text, "
        f"{fields} FROM candidate_sets s, json_each(s.columns, '$.text') j"
    )


@migrations()
def m007_application_id(db: Database) -> None:
    """Mark the file as ours (`PRAGMA application_id`, in the header): other applications' databases
    are then told apart without guessing from table names (agent.sessions.identity)."""
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


@migrations()
def m008_tool_call_output(db: Database) -> None:
    """What a tool printed while it ran (stdout and stderr, captured into its call record)."""
    db.table("tool_calls").add_column("output", str)


@migrations()
def m009_undone(db: Database) -> None:
    """`/undo` and `/retry` take a turn back without deleting it: its messages keep their text and get the
    time they were undone, and are left out of the history a session continues from."""
    db.table("messages").add_column("undone", str)


# "call": the tool call a node made (its record as a dict, None for most nodes); the JSON columns
# may gain fields without a migration: a reader fills a field missing from older rows with None
TREE_FIELDS = ("id", "parent", "tokens", "text", "mean", "status", "reason", "eos", "call")


@migrations()
def m010_search_trees(db: Database) -> None:
    """The token tree a search explored, one row per turn: per node its id, parent id (None under the
    prompt), token ids, text, mean log-prob, status, reason and whether it ends the answer, packed as a
    JSON object of columns (a search has thousands of nodes, always read per turn)."""
    db.table("search_trees").create(
        {
            "turn_id": int,
            "session_id": str,
            "turn": int,
            "nodes": int,
            "best_node": int,  # the node the chosen answer ends at
            "columns": str,  # JSON: {field: [value per node]} for TREE_FIELDS
        },
        pk="turn_id",
        not_null={"session_id", "turn", "nodes", "columns"},
        foreign_keys=[("turn_id", "turns", "id")],
    )


def pending(db: Database) -> list[str]:
    """Names of migrations not yet applied to `db` (read-only)."""
    return [m.name for m in migrations.pending(db)]


def applied(db: Database) -> list[str]:
    """Names of migrations applied to `db`, in order."""
    return [m.name for m in migrations.applied(db)]


def all_names() -> list[str]:
    """Every migration this version knows, in order."""
    return [m.name for m in migrations._migrations]
