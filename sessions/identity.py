"""Whose database is this? Looked at read-only before the store changes anything in a file.

Our databases carry `PRAGMA application_id = APPLICATION_ID` (set by the migration
`m007_application_id`, so a new database gets it at creation and an old one when it upgrades) and
a `_migrations` table of sqlite-utils' shape whose rows are all of our migration set. Databases made
before the mark (application id 0) are recognised by that table alone. Anything else (another
application's id, no `_migrations` table, one of another shape or recording another application's
migrations) is foreign: the store refuses it without writing a byte (no WAL switch, no tables).
A database of ours that records migrations this version does not know was made by a newer version:
the store opens it read-only.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

APPLICATION_ID = 0x41474E54  # "AGNT" in the header's application id field (offset 68)
MIGRATION_SET = "agent.sessions"
MIGRATIONS_TABLE = "_migrations"
# sqlite-utils' migrations table: (column, primary key)
MIGRATIONS_SHAPE = [("id", 1), ("migration_set", 0), ("name", 0), ("applied_at", 0)]


class Kind(Enum):
    NEW = "new"  # no file, an empty file, or a SQLite file without tables: ours to create
    OURS = "ours"  # made by this or an earlier version: upgrade and use
    NEWER = "newer"  # ours, with migrations this version does not know: read only
    FOREIGN = "foreign"  # not ours: refuse, untouched


@dataclass
class Identity:
    kind: Kind
    why: str = ""  # what made it foreign, worded for the user
    unknown_migrations: list[str] = field(default_factory=list)  # NEWER: what this version lacks


def read_only_uri(path: Path) -> str:
    """A `file:` URI that opens `path` read-only (SQLite then cannot write the file, whatever we run).
    In a folder that cannot be written SQLite cannot make the -shm file a WAL database needs even to be
    read: there the file is opened immutable (a listing may then miss a write another user makes meanwhile)."""
    uri = path.absolute().as_uri() + "?mode=ro"
    return uri if writable(path.absolute().parent) else uri + "&immutable=1"


def writable(path: Path) -> bool:
    """Whether this process may write `path` (a file, or a folder: create files in it)."""
    return os.access(path, os.W_OK)


def identify(path: Path, timeout: float, known_migrations: list[str]) -> Identity:
    """What `path` is; reads it through a read-only connection (sqlite3.Error when locked or corrupt)."""
    if not path.exists() or path.stat().st_size == 0:
        return Identity(Kind.NEW)
    conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=timeout, isolation_level=None)
    try:
        conn.execute("BEGIN")  # one snapshot: a process creating the database at once is seen before or after
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        shape = [(r[1], r[5]) for r in conn.execute(f"PRAGMA table_info({MIGRATIONS_TABLE})")]
        rows = conn.execute(f"SELECT migration_set, name FROM {MIGRATIONS_TABLE} ORDER BY rowid").fetchall() \
            if shape == MIGRATIONS_SHAPE else []
        conn.execute("COMMIT")
    finally:
        conn.close()
    return _classify(app_id, tables, shape, rows, known_migrations)


def _classify(app_id: int, tables: set[str], shape: list[tuple[str, int]], rows: list[tuple[str, str]],
              known_migrations: list[str]) -> Identity:
    if app_id not in (0, APPLICATION_ID):
        return Identity(Kind.FOREIGN, f"its application id is {app_id:#x}, not agent's ({APPLICATION_ID:#x})")
    if not tables:
        return Identity(Kind.NEW)
    listed = ", ".join(sorted(tables)[:5]) + (" ..." if len(tables) > 5 else "")
    if MIGRATIONS_TABLE not in tables:
        return Identity(Kind.FOREIGN, f"it has no {MIGRATIONS_TABLE} table (tables: {listed})")
    if shape != MIGRATIONS_SHAPE:
        columns = ", ".join(name for name, _ in shape)
        return Identity(Kind.FOREIGN, f"its {MIGRATIONS_TABLE} table is not agent's (columns: {columns})")
    others = sorted({migration_set for migration_set, _ in rows} - {MIGRATION_SET})
    if others:
        return Identity(Kind.FOREIGN, f"its {MIGRATIONS_TABLE} table records migrations of {', '.join(others)}")
    if app_id == 0 and not rows and tables != {MIGRATIONS_TABLE}:
        return Identity(Kind.FOREIGN, f"its {MIGRATIONS_TABLE} table is empty (tables: {listed})")
    unknown = [name for _, name in rows if name not in known_migrations]
    if unknown:
        return Identity(Kind.NEWER, unknown_migrations=unknown)
    return Identity(Kind.OURS)
