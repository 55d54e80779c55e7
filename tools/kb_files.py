"""Which files `agent kb add` reads, and how: folders walked without leaving them, sizes capped, UTF-8 only.

Inside a folder, a symbolic link is followed only when it leads to a file inside that folder (a link
to a directory inside it needs no following: the walk reaches that directory anyway); links out of
the folder, unreadable directories and files, files over the size limit and files that are not UTF-8
are not read and come back as `Skipped` with the reason, never dropped silently. Paths named on the
command line are taken as given (a named link is followed: the user chose it).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

INDEXED_SUFFIXES = (".txt", ".md", ".markdown")
DEFAULT_MAX_BYTES = 1024 * 1024
TITLE_CHARS = 200
# str.splitlines' line boundaries (the title is the first non-blank line)
_LINE_END = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_NON_SPACE = re.compile(r"\S")


class PathError(Exception):
    """A path named on the command line does not exist or is not a text or markdown file."""


@dataclass(frozen=True)
class Candidate:
    shown: Path  # the path as the user will recognise it (inside the folder they named)
    target: Path  # the file to open: `shown` itself, or where its symbolic link resolves


@dataclass(frozen=True)
class Source:
    key: str  # the resolved path: adding the same file again updates its document
    title: str
    text: str


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Found:
    files: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def find(paths: Iterable[str | Path]) -> Found:
    """The files to index under `paths` (folders recursively), in order, each real file once."""
    found = Found()
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise PathError(f"{str(path)!r} does not exist") from None
        except OSError as exc:
            found.skipped.append(Skipped(str(path), f"cannot read: {exc.strerror}"))
            continue
        if stat.S_ISDIR(mode):
            _walk(path, found)
        elif path.suffix.lower() not in INDEXED_SUFFIXES:
            raise PathError(f"{str(path)!r} is not a text or markdown file ({', '.join(INDEXED_SUFFIXES)})")
        else:
            found.files.append(Candidate(path, path.resolve()))
    seen: set[Path] = set()
    unique = []
    for candidate in found.files:
        if candidate.target not in seen:
            seen.add(candidate.target)
            unique.append(candidate)
    found.files = unique
    return found


def _walk(root: Path, found: Found) -> None:
    real_root = root.resolve()

    def unreadable(exc: OSError) -> None:
        found.skipped.append(Skipped(str(exc.filename), f"cannot read directory: {exc.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):  # links to directories not entered
        dirnames.sort()
        here = Path(dirpath)
        for name in dirnames:
            link = here / name
            if link.is_symlink() and not _real(link).is_relative_to(real_root):
                found.skipped.append(Skipped(str(link), f"symbolic link to {_real(link)}, outside {root}"))
        for name in sorted(filenames):
            if Path(name).suffix.lower() not in INDEXED_SUFFIXES:
                continue
            file = here / name
            if not file.is_symlink():
                found.files.append(Candidate(file, real_root / file.relative_to(root)))
                continue
            target = _real(file)
            if target.is_relative_to(real_root):
                found.files.append(Candidate(file, target))
            else:
                found.skipped.append(Skipped(str(file), f"symbolic link to {target}, outside {root}"))


def _real(link: Path) -> Path:
    """Where a link leads; a loop or a missing target resolves as far as it goes (opening it then fails
    and is reported), where Path.resolve would raise RuntimeError on a loop."""
    return Path(os.path.realpath(link))


def read(candidate: Candidate, max_bytes: int) -> Source | Skipped:
    """The file's text and title, or why it was not read (the file is never read past `max_bytes`)."""
    shown = str(candidate.shown)
    try:
        # O_NOFOLLOW: a file swapped for a link after the walk is not followed; O_NONBLOCK: a FIFO
        # named like a text file cannot hang the command
        fd = os.open(candidate.target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return Skipped(shown, f"cannot read: {exc.strerror}")
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return Skipped(shown, "not a regular file")
        if info.st_size > max_bytes:
            return Skipped(shown, f"{info.st_size} bytes, over the limit of {max_bytes} (--max-bytes)")
        try:
            data = file.read(max_bytes + 1)
        except OSError as exc:
            return Skipped(shown, f"cannot read: {exc.strerror}")
    if len(data) > max_bytes:  # it grew since fstat
        return Skipped(shown, f"over the limit of {max_bytes} bytes (--max-bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Skipped(shown, f"not UTF-8 text (invalid byte at offset {exc.start})")
    return Source(str(candidate.target), title_of(candidate.shown, text), text)


def title_of(path: Path, text: str) -> str:
    """A markdown file's leading `# heading`, else the file name without suffix (at most 200 characters)."""
    first = _NON_SPACE.search(text)
    if first is None or path.suffix.lower() not in (".md", ".markdown"):
        return path.stem[:TITLE_CHARS]
    end = _LINE_END.search(text, first.start())
    line = text[first.start(): end.start() if end else len(text)].strip()
    if not line.startswith("#"):
        return path.stem[:TITLE_CHARS]
    return (line.lstrip("#").strip() or path.stem)[:TITLE_CHARS]
