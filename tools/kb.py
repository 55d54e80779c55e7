"""The knowledge base behind SEARCH and LOAD: documents in SQLite with an FTS5 index.

Lives at `agent.paths.default_kb_path()` (override with the env var AGENT_KB). On first use an
empty knowledge base seeds itself from the docs shipped with the demo model
(`agent.demo_model.demo_kb_docs_path()`: one {"id", "title", "text"} object per line), if present.

Document ids come from SQLite (the rowid of the insert), never computed by us, and every change
(creating and seeding, one `add` call with all its files) is one write transaction taken up front
(`BEGIN IMMEDIATE`, waiting up to `BUSY_TIMEOUT_S` for another writer): concurrent `kb add`s queue
instead of overwriting each other, and a failure or kill leaves the knowledge base as it was. Each
document's search snippet is computed once when it is stored, so SEARCH never reads whole documents.
The file is created 0600 and marked with its own application id; a database that is not a knowledge
base (another application's, the session store) is refused untouched.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.demo_model import demo_kb_docs_path
from agent.paths import create_private_file, default_kb_path
from agent.tools import kb_files
from agent.tools.kb_files import DEFAULT_MAX_BYTES, Skipped

TABLE = "docs"
SNIPPET_CHARS = 200
TOP_K = 3
BUSY_TIMEOUT_S = 60.0
APPLICATION_ID = 0x41474B42  # "AGKB" in the header (the session store's is "AGNT")

# the FTS index is external-content (it stores no text): triggers keep it in step with the table
_FTS_DELETE = (f"INSERT INTO {TABLE}_fts ({TABLE}_fts, rowid, title, text)"
               " VALUES ('delete', old.rowid, old.title, old.text)")
# the text last: reading a row's other columns (the snippet for SEARCH) never walks a big text's pages
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, title TEXT NOT NULL, snippet TEXT,"
    " path TEXT, text TEXT NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_path ON {TABLE}(path)",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE}_fts USING FTS5(title, text, tokenize='unicode61', content='{TABLE}')",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_ai AFTER INSERT ON {TABLE} BEGIN"
    f" INSERT INTO {TABLE}_fts (rowid, title, text) VALUES (new.rowid, new.title, new.text); END",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_ad AFTER DELETE ON {TABLE} BEGIN {_FTS_DELETE}; END",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_au AFTER UPDATE ON {TABLE} BEGIN {_FTS_DELETE};"
    f" INSERT INTO {TABLE}_fts (rowid, title, text) VALUES (new.rowid, new.title, new.text); END",
    f"PRAGMA application_id = {APPLICATION_ID}",
)


class KBError(Exception):
    """The knowledge base could not be read or written; the message names the file."""


@dataclass
class Doc:
    id: int
    title: str
    text: str


@dataclass
class Hit:
    """A search match: the document's id, title and stored snippet (never its whole text)."""

    id: int
    title: str
    snippet: str


@dataclass
class Indexed:
    """What one `add` stored, and what it did not read (each with the reason)."""

    docs: list[Doc] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def kb_path() -> Path:
    env = os.environ.get("AGENT_KB")
    return Path(env).expanduser() if env else default_kb_path()


def shipped_docs_path() -> Path:
    """docs.jsonl of the demo model, wherever the package is installed (package data)."""
    return demo_kb_docs_path()


def snippet_of(text: str, width: int = SNIPPET_CHARS) -> str:
    """`" ".join(text.split())[:width]`, reading only as much of `text` as that needs.

    The flattened head of a text is a prefix of the flattened whole (a word cut at the end of the
    head is a prefix of the whole word), so once the head gives `width` characters they are the answer.
    """
    size = 4 * width
    while True:
        flat = " ".join(text[:size].split())
        if len(flat) >= width or size >= len(text):
            return flat[:width]
        size *= 4


def format_hit(hit: Hit) -> str:
    """`[ID] TITLE: TEXT`, the text on one line and cut to 200 characters."""
    return f"[{hit.id}] {hit.title}: {hit.snippet}"


@contextmanager
def _write(raw: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (so concurrent writers queue); joins one already open."""
    if raw.in_transaction:
        yield
        return
    raw.execute("BEGIN IMMEDIATE")
    try:
        yield
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            # the first error is the one to report; if even the rollback fails, the journal left
            # behind makes the next open roll the file back
            with suppress(sqlite3.Error):
                raw.execute("ROLLBACK")
        raise


def _create(conn: sqlite3.Connection) -> None:
    """The tables, the FTS index kept in step by triggers, and our application id."""
    with _write(conn):
        for statement in _SCHEMA:
            conn.execute(statement)


def _insert(conn: sqlite3.Connection, docs: Iterable[Doc]) -> None:
    """Documents with their own ids (the shipped seed), replacing any with the same id."""
    with _write(conn):
        for d in docs:
            conn.execute(
                f"INSERT INTO {TABLE} (id, title, text, snippet) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE"
                " SET title = excluded.title, text = excluded.text, snippet = excluded.snippet",
                [d.id, d.title, d.text, snippet_of(d.text)])


def create_kb(path: Path, docs: Iterable[Doc]) -> None:
    """A new knowledge base file holding exactly these documents (with their own ids)."""
    conn = _connect(path)
    try:
        _create(conn)
        _insert(conn, docs)
    finally:
        conn.close()


def _read_jsonl(path: Path) -> list[Doc]:
    docs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            docs.append(Doc(int(obj["id"]), str(obj["title"]), str(obj["text"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise KBError(f"{path}:{n}: not a {{\"id\", \"title\", \"text\"}} JSON object ({exc})") from exc
    return docs


def _connect(file: Path) -> sqlite3.Connection:
    if not file.exists():  # created 0600 before SQLite would create it 0644 (its journal copies the mode)
        create_private_file(file)
    conn = sqlite3.connect(file, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.create_function("kb_snippet", 1, snippet_of, deterministic=True)
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")}


def _check_ours(conn: sqlite3.Connection, file: Path) -> None:
    """Refuse a database that is not a knowledge base before anything is written to it."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = _tables(conn)
    why = ""
    if app_id not in (0, APPLICATION_ID):
        why = f"its application id is {app_id:#x}, not the knowledge base's ({APPLICATION_ID:#x})"
    elif tables and not ({TABLE, f"{TABLE}_fts"} <= tables and {"id", "title", "text"} <= _columns(conn)):
        why = f"it has other tables ({', '.join(sorted(tables)[:5])})"
    if why:
        raise KBError(f"{str(file)!r} is not a knowledge base: {why}; it was left untouched "
                      "(set AGENT_KB to another file)")


def _prepare(conn: sqlite3.Connection, file: Path) -> None:
    """Create and seed a new knowledge base, or bring an older one up to date (once, by one process)."""
    _check_ours(conn, file)
    if TABLE in _tables(conn) and "snippet" in _columns(conn):
        return
    with _write(conn):
        _check_ours(conn, file)  # again inside the lock: another process may have got there first
        if TABLE not in _tables(conn):
            _create(conn)
            seed = shipped_docs_path()
            if seed.is_file():
                _insert(conn, _read_jsonl(seed))
        elif "snippet" not in _columns(conn):  # made before snippets were stored
            conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN snippet TEXT")
            conn.execute(f"UPDATE {TABLE} SET snippet = kb_snippet(text)")
            _create(conn)  # the path index and the application id


def open_db(path: Path | None = None) -> sqlite3.Connection:
    """Open (creating and seeding on first use) the knowledge base."""
    file = path or kb_path()
    conn = None
    try:
        conn = _connect(file)
        _prepare(conn, file)
    except KBError:
        if conn is not None:
            conn.close()
        raise
    except (sqlite3.Error, OSError) as exc:  # sqlite3.DatabaseError for a corrupt file, OSError, ...
        if conn is not None:
            conn.close()
        raise KBError(f"knowledge base {str(file)!r} cannot be opened: {exc}") from exc
    return conn


def fts_query(text: str) -> str | None:
    """Each word quoted and OR-ed, so any word can match; punctuation dropped. None if no words."""
    words = re.findall(r"\w+", text)
    if not words:
        return None
    return " OR ".join('"' + w + '"' for w in words)


def _read(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    file = kb_path()
    conn = open_db(file)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise KBError(f"knowledge base {str(file)!r} cannot be read: {exc}") from exc
    finally:
        conn.close()


def search_docs(query: str, limit: int = TOP_K) -> list[Hit]:
    """Best matches by FTS5 bm25 (ties by id), each with its stored snippet."""
    q = fts_query(query)
    if q is None:
        return []
    rows = _read(
        f"SELECT d.id, d.title, coalesce(d.snippet, kb_snippet(d.text)) FROM {TABLE}_fts f"
        f" JOIN {TABLE} d ON d.rowid = f.rowid WHERE {TABLE}_fts MATCH ? ORDER BY bm25({TABLE}_fts), d.id LIMIT ?",
        [q, limit])
    return [Hit(int(r[0]), r[1], r[2]) for r in rows]


def get_doc(doc_id: int) -> Doc | None:
    rows = _read(f"SELECT id, title, text FROM {TABLE} WHERE id = ?", [doc_id])
    return Doc(int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


def _store(conn: sqlite3.Connection, source: kb_files.Source) -> Doc:
    """Update the document already indexed from this file, else insert it under a new id from SQLite."""
    row = conn.execute(f"SELECT id FROM {TABLE} WHERE path = ? ORDER BY id LIMIT 1", [source.key]).fetchone()
    values = [source.title, source.text, snippet_of(source.text)]
    if row:
        conn.execute(f"UPDATE {TABLE} SET title = ?, text = ?, snippet = ? WHERE id = ?", [*values, row[0]])
        return Doc(int(row[0]), source.title, source.text)
    cursor = conn.execute(f"INSERT INTO {TABLE} (title, text, snippet, path) VALUES (?, ?, ?, ?)",
                          [*values, source.key])
    return Doc(int(cursor.lastrowid or 0), source.title, source.text)


def index_paths(paths: Iterable[str | Path], max_bytes: int = DEFAULT_MAX_BYTES) -> Indexed:
    """Index .txt/.md files (directories recursively), all in one transaction; see `kb_files` for
    which files are read. Re-adding a file updates it in place. Files not read are listed, not fatal."""
    try:
        found = kb_files.find(paths)
    except kb_files.PathError as exc:
        raise KBError(str(exc)) from None
    result = Indexed(skipped=list(found.skipped))
    file = kb_path()
    conn = open_db(file)
    try:
        with _write(conn):
            for candidate in found.files:
                source = kb_files.read(candidate, max_bytes)
                if isinstance(source, Skipped):
                    result.skipped.append(source)
                else:
                    result.docs.append(_store(conn, source))
    except sqlite3.Error as exc:
        raise KBError(f"knowledge base {str(file)!r} could not be written ({exc}); nothing was added") from exc
    finally:
        conn.close()
    return result


def add_paths(paths: Iterable[str | Path], max_bytes: int = DEFAULT_MAX_BYTES) -> list[Doc]:
    """`index_paths`, for callers that only want the documents stored (skipped files are not reported)."""
    return index_paths(paths, max_bytes).docs


@dataclass
class Listed:
    """One stored document as `agent kb list` shows it: never its whole text."""

    id: int
    title: str
    chars: int
    path: str | None  # the file it was added from; None for the shipped seed documents


def list_docs() -> list[Listed]:
    """Every document, by id."""
    rows = _read(f"SELECT id, title, length(text), path FROM {TABLE} ORDER BY id", [])
    return [Listed(int(r[0]), r[1], int(r[2] or 0), r[3]) for r in rows]


def _find(conn: sqlite3.Connection, ref: str) -> list[Listed]:
    """The documents `ref` names: an id, or the file a document was added from (as given or resolved)."""
    columns = f"SELECT id, title, length(text), path FROM {TABLE}"
    if ref.strip().isdigit():
        rows = conn.execute(f"{columns} WHERE id = ?", [int(ref)]).fetchall()
    else:
        resolved = os.path.realpath(Path(ref).expanduser())  # how `add` keys a file (kb_files.Source.key)
        rows = conn.execute(f"{columns} WHERE path IN (?, ?) ORDER BY id", [resolved, ref]).fetchall()
    return [Listed(int(r[0]), r[1], int(r[2] or 0), r[3]) for r in rows]


def remove_docs(refs: Iterable[str]) -> list[Listed]:
    """Remove the documents named by ids or paths, in one transaction; KBError naming every ref that
    matches nothing, and then nothing is removed."""
    file = kb_path()
    conn = open_db(file)
    try:
        with _write(conn):
            found = {ref: _find(conn, ref) for ref in refs}
            unknown = [ref for ref, docs in found.items() if not docs]
            if unknown:
                raise KBError(f"no document {', '.join(repr(ref) for ref in unknown)} in {str(file)!r} "
                              "(see agent kb list); nothing was removed")
            removed = list({doc.id: doc for docs in found.values() for doc in docs}.values())
            conn.executemany(f"DELETE FROM {TABLE} WHERE id = ?", [[doc.id] for doc in removed])
    except sqlite3.Error as exc:
        raise KBError(f"knowledge base {str(file)!r} could not be written ({exc}); nothing was removed") from exc
    finally:
        conn.close()
    return removed
