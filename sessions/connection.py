"""Opening a session database: refuse what is not ours, upgrade what is, read newer ones read-only.

`StoreConnection` is the store's one SQLite connection and its write transactions; `SessionStore`
(agent.sessions.store) builds the session API on it. Opening looks at the file read-only first
(agent.sessions.identity): a foreign database is refused before anything is written (no WAL switch,
no tables, no -wal file); one written by a newer version (migrations unknown here) is opened with
`mode=ro` so SQLite itself cannot write it, and every write says why.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from agent.paths import create_private_file

from . import schema
from .checkpoint import Checkpointer
from .errors import StoreError, check_header, explain
from .identity import Kind, identify, read_only_uri, writable
from .text import decode_column

if TYPE_CHECKING:
    from typing import Self  # Python 3.11+: only for annotations (the package supports 3.10)

DEFAULT_TIMEOUT_S = 15.0


class StoreConnection:
    """One open session database: its connection, its write lock and whether it may be written."""

    def __init__(self, db: Database, path: Path, timeout: float, read_only_reason: str | None = None) -> None:
        self.db = db
        self.path = path
        self.timeout = timeout
        # why writes are refused (a database of a newer version); None when writable
        self.read_only_reason = read_only_reason
        # one connection, possibly used from a REPL thread and a generation thread: one call at a time
        self.lock = threading.RLock()
        self._checkpointer: Checkpointer | None = None  # started once the schema is ready
        self.closed = False

    @property
    def read_only(self) -> bool:
        return self.read_only_reason is not None

    @property
    def warning(self) -> str | None:
        """What a user should be told on opening (a read-only database); None when nothing."""
        return self.read_only_reason

    @classmethod
    def connect(cls, path: Path | str, timeout: float) -> Self:
        """Open (creating if needed) and upgrade the database at `path`; see the module docstring."""
        path = Path(path).expanduser()
        check_header(path)
        try:
            found = identify(path, timeout, schema.all_names())
        except sqlite3.Error as e:
            raise explain(e, path, timeout) from e
        if found.kind is Kind.FOREIGN:
            raise StoreError(f"{path} is a SQLite database of another application, not an agent session "
                             f"database ({found.why}); it was left untouched. Pass --db with another path.")
        reason = None
        if found.kind is not Kind.NEW and not (writable(path) and writable(path.absolute().parent)):
            reason = (f"session database {path} cannot be written (a read-only file or folder); it is open "
                      "read-only: pass --db with a path you can write")
        if found.kind is Kind.NEWER:
            reason = (f"session database {path} was written by a newer version of agent (migrations unknown "
                      f"here: {', '.join(found.unknown_migrations)}); it is open read-only: upgrade agent to "
                      "write to it, or pass --db with another path")
        try:
            if reason is None:
                create_private_file(path)
            conn = sqlite3.connect(read_only_uri(path) if reason else str(path), uri=reason is not None,
                                   timeout=timeout, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open session database {path}: {e}") from e
        conn.text_factory = decode_column  # a row another client wrote as bad UTF-8 still reads
        store = cls(Database(conn), path, timeout, reason)
        try:
            store.db.execute("PRAGMA foreign_keys = ON")
            if reason is None:
                store._prepare()
        except sqlite3.Error as e:
            conn.close()
            raise explain(e, path, timeout) from e
        except BaseException:
            conn.close()
            raise
        return store

    def _prepare(self) -> None:
        self.db.enable_wal()
        # NORMAL is durable against process crashes in WAL mode (only power loss can undo the
        # last commits, never corrupt); FULL would fsync on every message.
        self.db.execute("PRAGMA synchronous = NORMAL")
        if schema.pending(self.db):
            with self.transaction():  # a second process opening at once waits, then sees them applied
                schema.migrations.apply(self.db)
        # Checkpoints (copying the WAL into the database, with fsyncs) run on a background thread,
        # not inside a turn's commit: they were the whole p99 of a turn's write time.
        self.db.execute("PRAGMA wal_autocheckpoint = 0")
        self._checkpointer = Checkpointer(self.path, self.timeout)
        self._checkpointer.start()

    def close(self) -> None:
        """Stop the checkpointer and close; the last connection to close checkpoints the WAL. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.db.close()

    @contextmanager
    def sql_errors(self) -> Iterator[None]:
        """Hold the store's lock; turn sqlite3 errors into StoreError with the file named and a hint."""
        try:
            with self.lock:
                yield
        except sqlite3.Error as e:
            raise explain(e, self.path, self.timeout) from e

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction holding the write lock from its start (no upgrade deadlocks)."""
        if self.read_only_reason is not None:
            raise StoreError(f"nothing was written: {self.read_only_reason}")
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

    def row(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        # plain cursor: a read needs no savepoint guard (db.query's), and this runs on every write
        cur = self.db.conn.execute(sql, params)
        found = cur.fetchone()
        return None if found is None else dict(zip((d[0] for d in cur.description), found, strict=True))
