"""The WAL checkpointer: a background thread that copies the write-ahead log into the database.

Checkpoints (with their fsyncs) run here, not inside a turn's commit: they were the whole p99 of a
turn's write time. The store turns SQLite's automatic checkpoints off and wakes this thread after
each write.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Checkpointer(threading.Thread):
    """Runs PASSIVE WAL checkpoints on its own connection after writes, at most every `interval` s.

    PASSIVE never blocks writers or readers; a process killed mid-checkpoint is safe (SQLite
    replays or ignores the WAL on the next open).
    """

    def __init__(self, path: Path, timeout: float, interval: float = 0.5) -> None:
        super().__init__(name=f"checkpoint {path.name}", daemon=True)
        self.path = path
        self.timeout = timeout
        self.interval = interval
        self._wake = threading.Event()
        self._halt = threading.Event()

    def wake(self) -> None:
        """A write was committed: checkpoint soon."""
        self._wake.set()

    def stop(self) -> None:
        """Finish and wait for the thread (at most `timeout` seconds)."""
        self._halt.set()
        self._wake.set()
        self.join(timeout=self.timeout)

    def run(self) -> None:
        conn = sqlite3.connect(str(self.path), timeout=self.timeout)
        try:
            while True:
                self._wake.wait()
                if self._halt.is_set():
                    return
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # a busy or failing checkpoint is retried after the next write
                if self._halt.wait(self.interval):  # coalesce bursts of writes into one checkpoint
                    return
        finally:
            conn.close()
