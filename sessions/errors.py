"""The store's errors, worded for the user: each names the database file and what to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(Exception):
    """A session database problem, worded for the user (names the file and what to do)."""


class SessionNotFound(StoreError, KeyError):
    """No session matches the id (or id prefix) given (a KeyError too, for `except KeyError`)."""

    __str__ = Exception.__str__  # KeyError would show the message in quotes


def explain(error: sqlite3.Error, path: Path, timeout: float) -> StoreError:
    """A sqlite3 error as a StoreError naming the file, with a hint (locked, corrupt, ...)."""
    message = str(error)
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreError(
            f"session database {path} is locked by another process (waited {timeout:g} s); "
            "close the other program or try again"
        )
    if isinstance(error, sqlite3.DatabaseError) and (
        "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered
    ):
        return StoreError(
            f"session database {path} is corrupt ({message}); it was left untouched. "
            "Move it aside (or pass --db with another path) to start a new one"
        )
    return StoreError(f"session database {path}: {message}")


def check_header(path: Path) -> None:
    """Refuse a non-SQLite file before SQLite touches it (an empty file is a new database)."""
    if path.is_dir():
        raise StoreError(f"session database {path} is a directory; pass --db with a file path")
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(f"cannot read session database {path}: {e}") from e
    if head and head != SQLITE_HEADER[: len(head)] or 0 < len(head) < len(SQLITE_HEADER):
        raise StoreError(
            f"{path} is not a SQLite database (it starts with {head[:16]!r}); it was left untouched. "
            "Pass --db with another path"
        )
