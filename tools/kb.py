"""The knowledge base behind SEARCH and LOAD: documents in SQLite with an FTS5 index (sqlite-utils).

Lives at `agent.paths.default_kb_path()` (override with the env var AGENT_KB). On first use an
empty knowledge base seeds itself from the docs shipped with the demo model
(`agent.demo_model.demo_kb_docs_path()`: one {"id", "title", "text"} object per line), if present.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from agent.demo_model import demo_kb_docs_path
from agent.paths import default_kb_path

TABLE = "docs"
SNIPPET_CHARS = 200
TOP_K = 3
INDEXED_SUFFIXES = (".txt", ".md", ".markdown")

_lock = threading.Lock()  # seeding and adding are not re-entrant across threads


class KBError(Exception):
    """The knowledge base could not be read or written; the message names the file."""


@dataclass
class Doc:
    id: int
    title: str
    text: str


def kb_path() -> Path:
    env = os.environ.get("AGENT_KB")
    return Path(env).expanduser() if env else default_kb_path()


def shipped_docs_path() -> Path:
    """docs.jsonl of the demo model, wherever the package is installed (package data)."""
    return demo_kb_docs_path()


def open_db(path: Path | None = None) -> sqlite_utils.Database:
    """Open (creating and seeding on first use) the knowledge base."""
    file = path or kb_path()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite_utils.Database(file)
        with _lock:
            if TABLE not in db.table_names():
                _create(db)
                seed = shipped_docs_path()
                if seed.is_file():
                    _insert(db, _read_jsonl(seed))
    except KBError:
        raise
    except Exception as exc:  # sqlite3.DatabaseError for a corrupt file, OSError, ...
        raise KBError(f"knowledge base {str(file)!r} cannot be opened: {exc}") from exc
    return db


def _create(db: sqlite_utils.Database) -> None:
    db[TABLE].create({"id": int, "title": str, "text": str, "path": str}, pk="id", not_null={"title", "text"})
    db[TABLE].enable_fts(["title", "text"], create_triggers=True, tokenize="unicode61")


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


def _insert(db: sqlite_utils.Database, docs: Iterable[Doc]) -> None:
    db[TABLE].upsert_all(({"id": d.id, "title": d.title, "text": d.text} for d in docs), pk="id")


def fts_query(text: str) -> str | None:
    """Each word quoted and OR-ed, so any word can match; punctuation dropped. None if no words."""
    words = re.findall(r"\w+", text)
    if not words:
        return None
    return " OR ".join('"' + w + '"' for w in words)


def search_docs(query: str, limit: int = TOP_K) -> list[Doc]:
    """Best matches by FTS5 bm25 (ties by id)."""
    q = fts_query(query)
    if q is None:
        return []
    db = open_db()
    try:
        rows = db.execute(
            f"select d.id, d.title, d.text from {TABLE}_fts f join {TABLE} d on d.rowid = f.rowid "
            f"where {TABLE}_fts match ? order by bm25({TABLE}_fts), d.id limit ?",
            [q, limit],
        ).fetchall()
    finally:
        db.close()
    return [Doc(int(r[0]), r[1], r[2]) for r in rows]


def get_doc(doc_id: int) -> Doc | None:
    db = open_db()
    try:
        row = db.execute(f"select id, title, text from {TABLE} where id = ?", [doc_id]).fetchone()
    finally:
        db.close()
    return Doc(int(row[0]), row[1], row[2]) if row else None


def format_hit(doc: Doc) -> str:
    """`[ID] TITLE: TEXT`, the text on one line and cut to 200 characters."""
    text = " ".join(doc.text.split())[:SNIPPET_CHARS]
    return f"[{doc.id}] {doc.title}: {text}"


def _title_of(path: Path, text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            if path.suffix in (".md", ".markdown") and stripped.startswith("#"):
                return stripped.lstrip("#").strip() or path.stem
            break
    return path.stem


def _files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in INDEXED_SUFFIXES))
        elif p.is_file():
            if p.suffix.lower() not in INDEXED_SUFFIXES:
                raise KBError(f"{str(p)!r} is not a text or markdown file ({', '.join(INDEXED_SUFFIXES)})")
            out.append(p)
        else:
            raise KBError(f"{str(p)!r} does not exist")
    return out


def add_paths(paths: Iterable[str | Path]) -> list[Doc]:
    """Index .txt/.md files (directories recursively). Re-adding a file updates it in place."""
    files = _files(paths)
    db = open_db()
    added: list[Doc] = []
    try:
        with _lock:
            next_id = (db.execute(f"select coalesce(max(id), 0) from {TABLE}").fetchone()[0] or 0) + 1
            for f in files:
                try:
                    text = f.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise KBError(f"cannot read {str(f)!r} as UTF-8 text: {exc}") from exc
                key = str(f.resolve())
                row = db.execute(f"select id from {TABLE} where path = ?", [key]).fetchone()
                doc_id = int(row[0]) if row else next_id
                if not row:
                    next_id += 1
                doc = Doc(doc_id, _title_of(f, text), text)
                db[TABLE].upsert({"id": doc.id, "title": doc.title, "text": doc.text, "path": key}, pk="id")
                added.append(doc)
    finally:
        db.close()
    return added
