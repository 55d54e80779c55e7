"""Crash safety and concurrency of the session store, with real processes.

A child process writes turns (user message, assistant message, a record with many candidates)
and prints "done TURN" after each turn is committed. The parent SIGKILLs it at random moments,
again and again on the same database: after every kill the database passes
`PRAGMA integrity_check`, every turn the child reported is complete, and no turn record is ever
half written.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from agent.sessions import schema
from agent.sessions.store import SessionStore

CANDIDATES = 300

CHILD = r"""
import sys
from agent.sessions import schema
from agent.sessions.store import AnswerRecord, SessionStore

db, sid, count, n_cands = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = SessionStore.open(db, timeout=60)
if sid == "new":
    sid = store.create_session("demo-model", None)
    print("session", sid, flush=True)
turn = store.next_turn(sid)
print("ready", turn, flush=True)
for _ in range(count):
    # as agent.turn.ChatSession saves a turn: the question (drawing the turn number), then the answer
    # with its record, tool calls and candidates in one transaction
    turn = store.start_turn(sid, f"question {turn} from {sid}")
    store.finish_turn(sid, turn, AnswerRecord(
        text=f'SEARCH("q{turn}")\n=> result {turn}\nanswer {turn}',
        config={"strategy": "tree", "seed": turn, "temperature": 0.7},
        tool_calls=[{"tool": "search", "args": {"query": f"q{turn}"}, "result": f"result {turn}",
                     "error": None, "seconds": 0.001, "pure": True, "speculative": False}],
        candidates=[{"text": f"candidate {i} of turn {turn} " * 4, "score": -float(i), "token_count": i,
                     "strategy": "tree", "parent": i // 2 if i else None} for i in range(n_cands)],
        timings={"total": 0.01}, token_counts={"new_tokens": 5},
    ))
    print("done", turn, flush=True)
    turn += 1
store.close()
print("exit", flush=True)
"""


class Child:
    """A child writer process and the lines it printed, read by a pump thread as they come."""

    def __init__(self, db: Path, sid: str, count: int, n_cands: int = CANDIDATES) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), sid, str(count), str(n_cands)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self.ended = False  # the child's output is closed: nothing more will be printed
        self.printed = threading.Condition()
        self.pump = threading.Thread(target=self._read, daemon=True)
        self.pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):  # a line cut short by the kill was not reported
                with self.printed:
                    self.lines.append(line.strip())
                    self.printed.notify_all()
        with self.printed:  # end of output: wake a waiter so it can see the child is gone
            self.ended = True
            self.printed.notify_all()

    def wait_for(self, word: str, timeout: float = 60.0) -> None:
        """Block until the child prints a line starting with `word`."""
        def seen() -> bool:
            return any(line.startswith(word) for line in self.lines)

        with self.printed:
            self.printed.wait_for(lambda: seen() or self.ended, timeout=timeout)
            found, ended = seen(), self.ended
        assert found, f"child exited early: {self.stderr()}" if ended else f"child never printed {word!r}"

    def finish(self, timeout: float = 300) -> int:
        """Wait for the child to end and for the pump to have read all it printed; its exit status."""
        status = self.proc.wait(timeout=timeout)
        self.pump.join(timeout=timeout)
        return status

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr else ""


def _check(db: Path, sid: str, reported: set[int]) -> tuple[set[int], set[int]]:
    """Integrity ok, every reported turn complete, no half-written record; returns (turns recorded,
    turns with a user message: a kill inside a turn leaves messages without a record)."""
    conn = sqlite3.connect(db)  # a plain reader, as any SQLite tool would be
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        users = {t for (t,) in conn.execute("SELECT turn FROM messages WHERE session_id=? AND role='user'", (sid,))}
        replies = {t for (t,) in conn.execute(
            "SELECT turn FROM messages WHERE session_id=? AND role='assistant'", (sid,))}
        counts = dict(conn.execute(
            "SELECT t.turn, (SELECT count(*) FROM candidates c WHERE c.turn_id = t.id) FROM turns t "
            "WHERE t.session_id = ?", (sid,)).fetchall())
        calls = dict(conn.execute(
            "SELECT t.turn, (SELECT count(*) FROM tool_calls c WHERE c.turn_id = t.id) FROM turns t "
            "WHERE t.session_id = ?", (sid,)).fetchall())
        fts = conn.execute(
            "SELECT count(*) FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            "WHERE messages_fts MATCH 'question' AND m.session_id = ?", (sid,)).fetchone()[0]
    finally:
        conn.close()
    missing = reported - (users & replies & set(counts))
    assert not missing, f"turns reported complete but missing: {sorted(missing)}"
    assert all(n == CANDIDATES for n in counts.values()), "a turn record was half written"
    assert all(n == 1 for n in calls.values())
    assert set(counts) <= replies <= users, "a turn record without its messages"
    assert replies <= set(counts), "an answer without its turn record (a turn that looks complete)"
    assert fts == len(users), "full-text index out of step with messages"
    return set(counts), users


def test_sigkill_at_random_moments_never_loses_a_completed_turn(tmp_path: Path) -> None:
    db = tmp_path / "crash.sqlite"
    with SessionStore.open(db) as store:
        sid = store.create_session("demo-model", "sha256:0")
    rng = random.Random(20261122)
    reported: set[int] = set()
    kills = 0
    mid_turn = 0
    partial_before = 0
    while kills < 24:
        child = Child(db, sid, count=10_000)
        child.wait_for("ready")
        # not synchronisation: a random delay, so the kill lands at a random point of a turn
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(child.proc.pid, signal.SIGKILL)
        assert child.finish(timeout=30) == -signal.SIGKILL
        kills += 1
        done = {int(line.split()[1]) for line in child.lines if line.startswith("done")}
        reported |= done
        recorded, users = _check(db, sid, reported)
        partial = len(users - recorded)
        # killed inside a turn: after its commit but before it was reported, or between its question
        # and its answer (a new partial turn), or before any turn completed
        mid_turn += bool(recorded - reported) or partial > partial_before or not done
        partial_before = partial
    assert len(reported) >= 10, "the child should complete turns between kills"
    # resuming after each kill continued the numbering: no turn number was used twice
    conn = sqlite3.connect(db)
    dupes = conn.execute(
        "SELECT turn, count(*) FROM messages WHERE role='user' GROUP BY turn HAVING count(*) > 1").fetchall()
    conn.close()
    assert dupes == []
    assert mid_turn > 0


def test_two_writers_on_one_database_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    with SessionStore.open(db) as store:
        sids = [store.create_session("demo-model", None) for _ in range(2)]
    children = [Child(db, sid, count=25) for sid in sids]
    for child in children:
        assert child.finish() == 0, child.stderr()
    for child, sid in zip(children, sids, strict=True):
        assert child.lines[-1] == "exit"
        reported = {int(line.split()[1]) for line in child.lines if line.startswith("done")}
        assert reported == set(range(1, 26))
        assert _check(db, sid, reported) == (reported, reported)
    with SessionStore.open(db) as store:
        assert sorted(s["turns"] for s in store.list_sessions()) == [25, 25]


def test_processes_creating_the_database_at_once_all_succeed(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "new.sqlite"  # neither the file nor its directory exists yet
    children = [Child(db, "new", count=3, n_cands=10) for _ in range(3)]
    sids = []
    for child in children:
        assert child.finish() == 0, child.stderr()
        sids.append(next(line.split()[1] for line in child.lines if line.startswith("session")))
        assert [line for line in child.lines if line.startswith("done")] == ["done 1", "done 2", "done 3"]
    with SessionStore.open(db) as store:
        assert sorted(s["id"] for s in store.list_sessions()) == sorted(sids)
        assert store.schema_version() == schema.all_names()  # each migration applied exactly once


def test_two_stores_in_one_process_interleave(tmp_path: Path) -> None:
    """Two REPLs in one process (or one REPL and `agent sessions delete`) share a file safely."""
    db = tmp_path / "s.sqlite"
    a, b = SessionStore.open(db), SessionStore.open(db)
    sa, sb = a.create_session("m", None), b.create_session("m", None)
    for turn in range(1, 6):
        a.add_message(sa, turn, "user", f"a{turn}")
        b.add_message(sb, turn, "user", f"b{turn}")
    assert [m["text"] for m in b.messages(sa)] == [f"a{t}" for t in range(1, 6)]  # each sees the other's commits
    b.delete(sa)
    assert [s["id"] for s in a.list_sessions()] == [sb]
    a.close()
    b.close()
