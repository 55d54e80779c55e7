"""The folder of converted models in the agent home: one folder per GGUF file content, and what is known about each.

`models/<first 16 hex of sha256>/` holds a model written by save_pretrained and its `source.json`;
`models/index.json` maps (path, size, mtime) to a file's sha256 so a second start does not rehash it;
`.partial-<pid>-*` folders are conversions under way (or cut short). agent.model.gguf fills the folder;
`agent models` lists and prunes it. Nothing here imports torch, transformers or gguf.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.paths import agent_home

SOURCE_FILE = "source.json"
INDEX_FILE = "index.json"
PARTIAL_PREFIX = ".partial-"  # a conversion under way (or one a crash cut short): never listed or loaded


class ModelCacheError(Exception):
    """A cached conversion named on the command line is unknown, ambiguous, or not ours to delete."""


@dataclass(frozen=True)
class Conversion:
    """A cached conversion: the model directory and what `source.json` says about it."""

    directory: Path
    source: dict[str, Any]

    @property
    def sha256(self) -> str:
        return str(self.source.get("sha256", ""))

    @property
    def name(self) -> str:
        return str(self.source.get("file_name", self.directory.name))


def models_dir() -> Path:
    """The folder of cached conversions (created on demand)."""
    path = agent_home() / "models"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def write_json(path: Path, data: object) -> None:
    """Write atomically: readers see the old file or the new one, never half of one."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, ensure_ascii=False)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# The hash index


def _index_key(path: Path) -> tuple[str, dict[str, int]]:
    stat = path.stat()
    return str(path), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_index(root: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((root / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: it is only a cache of hashes
    return data if isinstance(data, dict) else {}


def indexed_hash(root: Path, path: Path) -> str | None:
    """The sha256 remembered for this file, if its size and mtime are unchanged since."""
    key, stamp = _index_key(path)
    entry = _read_index(root).get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        digest = entry.get("sha256")
        return digest if isinstance(digest, str) and digest else None
    return None


def remember_hash(root: Path, path: Path, digest: str) -> None:
    key, stamp = _index_key(path)
    index = _read_index(root)
    index[key] = {**stamp, "sha256": digest}
    write_json(root / INDEX_FILE, index)


# ---------------------------------------------------------------------------------------------
# Conversions under way


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def remove_stale_partials(root: Path) -> None:
    """Folders of conversions whose process died (SIGKILL, power loss): nothing else would remove them."""
    for entry in root.glob(f"{PARTIAL_PREFIX}*"):
        pid_text = entry.name[len(PARTIAL_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@contextmanager
def partial_dir(root: Path) -> Iterator[Path]:
    """A temporary folder in `root` (same file system, so the final rename is atomic); removed on failure."""
    temp = Path(tempfile.mkdtemp(dir=root, prefix=f"{PARTIAL_PREFIX}{os.getpid()}-"))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # after a successful rename there is nothing left here


# ---------------------------------------------------------------------------------------------
# Complete conversions: reading, listing, removing


def read_conversion(directory: Path) -> Conversion | None:
    """The conversion in `directory`, or None where there is no complete one."""
    try:
        source = json.loads((directory / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Conversion(directory, source) if isinstance(source, dict) else None


def conversions() -> list[Conversion]:
    """Every complete cached conversion, by file name."""
    found = (read_conversion(entry) for entry in sorted(models_dir().iterdir())
             if entry.is_dir() and not entry.name.startswith("."))
    return sorted((c for c in found if c is not None), key=lambda c: (c.name.lower(), c.directory.name))


def find_conversion(name_or_hash: str) -> Conversion:
    """The one cached conversion whose file name, hash or hash prefix (4+ hex) is `name_or_hash`."""
    wanted = name_or_hash.strip().lower()
    every = conversions()
    matches = [c for c in every if c.name.lower() == wanted or c.directory.name == wanted]
    if not matches and len(wanted) >= 4:
        matches = [c for c in every if c.sha256.startswith(wanted)]
    if not matches:
        known = ", ".join(f"{c.name} ({c.directory.name})" for c in every) or "none"
        raise ModelCacheError(f"no cached conversion is named {name_or_hash!r} (cached: {known}); see `agent models`")
    if len(matches) > 1:
        names = ", ".join(c.directory.name for c in matches)
        raise ModelCacheError(f"{name_or_hash!r} names more than one cached conversion ({names}); give its hash")
    return matches[0]


def remove_conversion(conversion: Conversion) -> None:
    """Delete a cached conversion (only ever a folder directly inside the models folder) and its index entries."""
    root = models_dir().resolve()
    directory = conversion.directory.resolve()
    if directory.parent != root or conversion.directory.is_symlink():
        raise ModelCacheError(f"{directory} is not inside the models folder {root}; nothing was removed")
    shutil.rmtree(directory)
    index = _read_index(root)
    kept = {key: entry for key, entry in index.items()
            if not (isinstance(entry, dict) and str(entry.get("sha256", "")).startswith(directory.name))}
    if kept != index:
        write_json(root / INDEX_FILE, kept)


def disk_size(directory: Path) -> int:
    """Bytes the files under `directory` take."""
    return sum(entry.stat().st_size for entry in directory.rglob("*") if entry.is_file())
