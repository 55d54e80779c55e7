"""Issue 18's session-store items on real SQLite files: foreign and newer databases left untouched,
a write lock held by another process, one transaction per turn, concurrent writers of one session,
lone surrogates, tool files named inside a session, file permissions."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.config import DecodeConfig
from agent.sessions import schema
from agent.sessions.identity import APPLICATION_ID
from agent.sessions.store import AnswerRecord, SessionStore, StoreError
from agent.turn import ChatSession

FIXTURES = Path(__file__).parent / "fixtures"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(args: list[str], **env: str) -> Any:
    return CliRunner().invoke(main, args, env=env or None)


# ------------------------------------------------------------------ foreign and newer databases


def _foreign_with_migrations(path: Path, shape: str) -> None:
    """Another application's database with a `_migrations` table (sqlite-utils' shape or its own)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    if shape == "sqlite-utils":
        conn.execute("CREATE TABLE _migrations (id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT, "
                     "applied_at TEXT)")
        conn.execute("INSERT INTO _migrations (migration_set, name, applied_at) VALUES ('billing', '001_init', 'x')")
    else:
        conn.execute("CREATE TABLE _migrations (version INTEGER NOT NULL, applied TEXT)")
        conn.execute("INSERT INTO _migrations VALUES (3, 'yesterday')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("shape", ["sqlite-utils", "its own"])
def test_foreign_database_with_a_migrations_table_is_refused_byte_for_byte_untouched(tmp_path: Path,
                                                                                     shape: str) -> None:
    path = tmp_path / "billing.sqlite"
    _foreign_with_migrations(path, shape)
    before = _sha(path)
    with pytest.raises(StoreError, match="another application") as err:
        SessionStore.open(path)
    assert str(path) in str(err.value) and "untouched" in str(err.value)
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["billing.sqlite"]  # no -wal, no -shm
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    conn.close()
    listed = _cli(["sessions", "list", "--db", str(path)])
    assert listed.exit_code == 1 and "another application" in listed.output and listed.exception is not None
    assert isinstance(listed.exception, SystemExit)  # a clean error, no traceback
    assert _sha(path) == before


def test_another_applications_id_is_refused_even_with_our_tables(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionStore.open(path) as store:
        store.create_session("m", None)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    before = _sha(path)
    with pytest.raises(StoreError, match="application id is 0x4d2"):
        SessionStore.open(path)
    assert _sha(path) == before


def test_new_and_upgraded_databases_are_marked_as_ours(tmp_path: Path) -> None:
    new, old = tmp_path / "new.sqlite", tmp_path / "old.sqlite"
    old.write_bytes((FIXTURES / "sessions_v1.sqlite").read_bytes())
    for path in (new, old):
        with SessionStore.open(path) as store:
            assert store.schema_version() == schema.all_names() and not store.read_only
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        conn.close()
    with SessionStore.open(old) as store:  # the old sessions are all there
        assert {s["id"] for s in store.list_sessions()} == {"a1b2c3d4e5f6", "0a0b0c0d0e0f"}


def _newer(path: Path) -> str:
    """A database of ours written by a future version (a migration this one does not know)."""
    with SessionStore.open(path) as store:
        sid = store.create_session("demo-model", None, system_prompt="be brief")
        turn = store.start_turn(sid, "what is 2+2?")
        store.finish_turn(sid, turn, AnswerRecord(text="4", config={"strategy": "greedy"}))
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _migrations (migration_set, name, applied_at) "
                 "VALUES ('agent.sessions', 'm999_from_the_future', 'x')")
    conn.commit()
    conn.close()
    return sid


def test_newer_schema_opens_read_only_reads_work_and_writes_change_nothing(tmp_path: Path,
                                                                           tiny_model_dir: Path) -> None:
    path = tmp_path / "s.sqlite"
    sid = _newer(path)
    before = _sha(path)
    with SessionStore.open(path) as store:
        assert store.read_only and "newer version" in (store.warning or "")
        assert "m999_from_the_future" in (store.warning or "")
        assert [s["id"] for s in store.list_sessions()] == [sid]
        assert [m["text"] for m in store.messages(sid)] == ["be brief", "what is 2+2?", "4"]
        with pytest.raises(StoreError, match="newer version"):
            store.create_session("demo-model", None)
        with pytest.raises(StoreError, match="read-only"):
            store.start_turn(sid, "and 3+3?")
    assert _sha(path) == before

    listed = _cli(["sessions", "list", "--json", "--db", str(path)])
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["id"] == sid
    assert "newer version" in listed.stderr
    shown = _cli(["sessions", "show", sid, "--db", str(path)])
    assert shown.exit_code == 0 and "what is 2+2?" in shown.stdout

    run = _cli(["run", "hi", "--model", str(tiny_model_dir), "--no-tools", "--max-new-tokens", "3",
                "--db", str(path)])
    assert run.exit_code == 1 and isinstance(run.exception, SystemExit)
    assert "newer version" in run.stderr and str(path) in run.stderr and "--no-save" in run.stderr
    assert _sha(path) == before
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1  # no orphan session row
    conn.close()


# ------------------------------------------------------------------ a write lock held by another process

LOCK_HOLDER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()  # hold the write lock until the parent says
conn.execute("ROLLBACK")
conn.close()
"""


class LockHolder:
    """Another process holding the database's write lock until `release()`."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.close()
            assert self.proc.wait(timeout=30) == 0


def test_a_locked_database_keeps_the_answer_and_saves_it_when_the_lock_frees(tiny_lm: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SessionStore.open(path, timeout=0.3)
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=5), store=store)
    holder = LockHolder(path)
    try:
        first = session.ask("hello")
    finally:
        holder.release()
    assert first.response and first.unsaved is not None
    assert str(path) in first.unsaved and "locked by another process" in first.unsaved
    second = session.ask("again")
    assert second.unsaved is None and second.session_id is not None
    transcript = store.transcript(second.session_id)
    assert [(t["turn"], [m["role"] for m in t["messages"]], len(t["records"])) for t in transcript] == [
        (1, ["user", "assistant"], 1), (2, ["user", "assistant"], 1)]
    assert transcript[0]["messages"][1]["text"] == first.response
    session.close()


def test_closing_while_still_locked_names_what_was_not_saved(tiny_lm: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=5),
                          store=SessionStore.open(path, timeout=0.2))
    session.ask("first question")  # saved
    holder = LockHolder(path)
    try:
        assert session.ask("second question").unsaved
        with pytest.raises(StoreError) as err:
            session.clear()  # would drop the unsaved turn: refused, nothing forgotten
        assert "second question" in str(err.value)
        with pytest.raises(StoreError) as err:
            session.close()
    finally:
        holder.release()
    message = str(err.value)
    assert str(path) in message and "locked" in message and "'second question'" in message
    assert "its question and answer" in message and "first question" not in message


def test_agent_run_on_a_locked_database_prints_the_answer_and_says_it_was_not_saved(tiny_model_dir: Path,
                                                                                    tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SessionStore.open(path).close()
    holder = LockHolder(path)
    try:
        run = _cli(["run", "hello", "--model", str(tiny_model_dir), "--no-tools", "--max-new-tokens", "4",
                    "--json", "--db", str(path)], AGENT_DB_TIMEOUT="0.3")
    finally:
        holder.release()
    assert run.exit_code == 1 and isinstance(run.exception, SystemExit), run.output  # no traceback
    payload = json.loads(run.stdout)
    assert payload["new_tokens"] == 4 and payload["saved"] is False  # the answer was printed, marked unsaved
    assert str(path) in run.stderr and "locked by another process" in run.stderr
    assert "not saved" in run.stderr.lower() and "'hello'" in run.stderr


# ------------------------------------------------------------------ one transaction per turn, concurrent writers


def test_an_answer_is_never_stored_without_its_record(tmp_path: Path) -> None:
    with SessionStore.open(tmp_path / "s.sqlite") as store:
        sid = store.create_session("m", None)
        turn = store.start_turn(sid, "question")
        with pytest.raises(StoreError):  # the record fails inside the transaction, after the message went in
            store.finish_turn(sid, turn, AnswerRecord(
                text="an answer", tool_calls=[{"tool": "calc", "result": object()}]))
        assert [m["role"] for m in store.messages(sid)] == ["user"]  # a partial turn, not a complete-looking one
        assert store.turn_records(sid) == []


def test_two_connections_writing_one_session_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    a, b = SessionStore.open(path), SessionStore.open(path)
    sid = a.create_session("m", None)
    # the audit's order: A's question, B's question, B's answer, A's answer
    a.add_message(sid, 1, "user", "A asks")
    b.add_message(sid, 2, "user", "B asks")
    b.add_message(sid, 2, "assistant", "B answered")
    a.add_message(sid, 1, "assistant", "A answered")
    assert [m["content"] for m in b.history(sid)] == ["A asks", "A answered", "B asks", "B answered"]
    # turn numbers drawn inside the write transaction: each writer gets its own
    ta, tb = a.start_turn(sid, "A again"), b.start_turn(sid, "B again")
    assert (ta, tb) == (3, 4)
    b.finish_turn(sid, tb, AnswerRecord(text="B done"))
    a.finish_turn(sid, ta, AnswerRecord(text="A done"))
    assert [m["content"] for m in a.history(sid)][4:] == ["A again", "A done", "B again", "B done"]
    a.close()
    b.close()


APPENDER = r"""
import sys
from agent.sessions.store import AnswerRecord, SessionStore

store = SessionStore.open(sys.argv[1], timeout=60)
for k in range(int(sys.argv[3])):
    turn = store.start_turn(sys.argv[2], f"{sys.argv[4]} question {k}")
    store.finish_turn(sys.argv[2], turn, AnswerRecord(text=f"{sys.argv[4]} answer {k}",
                                                      config={"strategy": "greedy"}))
store.close()
"""


def test_two_processes_appending_to_one_session_get_distinct_turns(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionStore.open(path) as store:
        sid = store.create_session("m", None)
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), sid, "15", name],
                              stderr=subprocess.PIPE, text=True) for name in ("A", "B")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    with SessionStore.open(path) as store:
        transcript = store.transcript(sid)
        assert [t["turn"] for t in transcript] == list(range(1, 31))
        for t in transcript:  # each turn: one writer's question then its own answer, and one record
            (question, answer) = [m["text"] for m in t["messages"]]
            assert question.split()[0] == answer.split()[0] and question.split()[-1] == answer.split()[-1]
            assert len(t["records"]) == 1


def test_two_chat_sessions_resuming_one_session_get_distinct_turns(tiny_lm: Any, tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.sqlite")
    first = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=3), store=store)
    sid = first.ask("start").session_id
    assert sid is not None
    a = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=3), store=store, session_id=sid)
    b = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=3), store=store, session_id=sid)
    assert (a.ask("from A").turn, b.ask("from B").turn) == (2, 3)
    assert [(m["turn"], m["role"]) for m in store.messages(sid)] == [
        (1, "user"), (1, "assistant"), (2, "user"), (2, "assistant"), (3, "user"), (3, "assistant")]
    store.close()


# ------------------------------------------------------------------ valid UTF-8 into SQLite


def test_lone_surrogates_are_stored_as_replacement_characters(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with SessionStore.open(db) as store:
        sid = store.create_session("m", None)
        store.add_message(sid, 1, "user", "find \udcff bytes")  # argv decoded with surrogateescape
        store.add_message(sid, 1, "assistant", 'SEARCH("\ud800x")\n=> r\udfff\nok')
        store.record_turn(sid, 1, config={"strategy": "greedy", "note": "\ud800"},
                          tool_calls=[{"tool": "search", "args": {"query": "\ud800x"}, "result": "r\udfff",
                                       "error": None, "seconds": 0.0, "call_text": 'SEARCH("\ud800x")',
                                       "output": "printed \ud800"}],
                          candidates=[{"text": 'SEARCH("\ud800x")', "strategy": "tree\udc80"}],
                          timings={}, token_counts={})
        messages = store.messages(sid)
        assert [m["text"] for m in messages] == ["find \ufffd bytes", 'SEARCH("\ufffdx")\n=> r\ufffd\nok']
        (record,) = store.turn_records(sid)
        call = record["tool_calls"][0]
        assert call["args"] == {"query": "\ufffdx"} and call["result"] == "r\ufffd"
        assert call["output"] == "printed \ufffd" and record["config"]["note"] == "\ufffd"
        assert record["candidates"][0]["text"] == 'SEARCH("\ufffdx")'
        # surrogate pairs are one character, stored exactly
        store.add_message(sid, 2, "user", "smile \ud83d\ude00")
        assert store.messages(sid)[-1]["text"] == "smile \U0001f600"
    for args in (["sessions", "show", sid], ["sessions", "search", "bytes"], ["sessions", "list"],
                 ["sessions", "export", sid, "--format", "json"]):
        done = _cli([*args, "--db", str(db)])
        assert done.exit_code == 0 and done.exception is None, (args, done.output)


def test_a_prompt_with_bytes_that_are_not_utf8_is_answered_and_saved(tiny_model_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    prompt = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # as Python decodes such an argv
    run = _cli(["run", prompt, "--model", str(tiny_model_dir), "--max-new-tokens", "4", "--json", "--db", str(db)])
    assert run.exit_code == 0 and run.exception is None, run.output
    with SessionStore.open(db) as store:
        (listed,) = store.list_sessions()
        questions = [m["text"] for m in store.messages(listed["id"]) if m["role"] == "user"]
        assert questions == ["caf\ufffd au lait"] and listed["id"] == json.loads(run.stdout)["session_id"]
        assert len(store.turn_records(listed["id"])) == 1


def test_rows_other_tools_wrote_as_bad_utf8_still_show_and_search(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with SessionStore.open(db) as store:
        sid = store.create_session("m", None)
        store.record_turn(sid, 1, config={}, tool_calls=[], candidates=[{"text": "c"}], timings={}, token_counts={})
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO messages (session_id, turn, role, text, created) "
                 "VALUES (?, 1, 'user', CAST(X'62616420ff6279746573' AS TEXT), 'x')", (sid,))
    conn.execute("UPDATE candidate_sets SET columns = json_set(columns, '$.text[0]', 'lone \\ud800')")
    conn.commit()
    conn.close()
    with SessionStore.open(db) as store:
        assert store.messages(sid)[0]["text"] == "bad \ufffdbytes"
        assert "\ud800" not in store.turn_records(sid)[0]["candidates"][0]["text"]
    for args in (["sessions", "show", sid], ["sessions", "search", "bad"], ["sessions", "list"],
                 ["sessions", "export", sid]):
        done = _cli([*args, "--db", str(db)])
        assert done.exit_code == 0 and done.exception is None, (args, done.output)


def test_tool_output_is_stored_with_the_call(tmp_path: Path) -> None:
    with SessionStore.open(tmp_path / "s.sqlite") as store:
        sid = store.create_session("m", None)
        store.record_turn(sid, 1, config={}, candidates=[], timings={}, token_counts={}, tool_calls=[
            {"tool": "calc", "args": {"expression": "1+1"}, "result": "2", "output": "debug: adding\n"},
            {"tool": "calc", "args": {"expression": "2"}, "result": "2"}])
        assert [c["output"] for c in store.turn_records(sid)[0]["tool_calls"]] == ["debug: adding\n", None]


# ------------------------------------------------------------------ tool files named inside a session

EVIL = """
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("the session ran my code")
from agent.tooling.spec import tool

@tool
def shout(text: str) -> str:
    '''Shout.'''
    return text.upper()
"""


def test_rerun_never_imports_tool_files_named_in_the_session(tiny_model_dir: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil_tools.py"
    evil.write_text(EVIL)
    db = tmp_path / "crafted.sqlite"
    with SessionStore.open(db) as store:  # a crafted session file naming a tools file
        sid = store.create_session(str(tiny_model_dir), None)
        store.add_message(sid, 1, "user", "hi")
        store.add_message(sid, 1, "assistant", "HI")
        store.record_turn(sid, 1, config={**DecodeConfig(max_new_tokens=3).to_dict(), "tools": ["shout"],
                                          "tool_files": [str(evil)]},
                          tool_calls=[], candidates=[], timings={}, token_counts={})
    done = _cli(["replay", sid, "--rerun", "--db", str(db)])
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit)
    assert str(evil) in done.stderr and "--tools" in done.stderr
    other = tmp_path / "other_tools.py"
    other.write_text("")
    done = _cli(["replay", sid, "--rerun", "--tools", str(other), "--db", str(db)])
    assert done.exit_code == 1 and str(evil) in done.stderr
    assert not (tmp_path / "imported.marker").exists()


def test_rerun_imports_the_tool_files_given_on_the_command_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    tools = tmp_path / "shouting.py"
    tools.write_text(EVIL)
    db = tmp_path / "s.sqlite"
    run = _cli(["run", "hi", "--model", str(tiny_model_dir), "--tools", str(tools), "--max-new-tokens", "6",
                "--json", "--db", str(db)])
    assert run.exit_code == 0, run.output
    sid = json.loads(run.stdout)["session_id"]
    (tmp_path / "imported.marker").unlink()
    done = _cli(["replay", sid, "--rerun", "--tools", str(tools), "--db", str(db)])
    assert done.exit_code == 0, done.output
    assert "turn 1: identical" in done.stdout and (tmp_path / "imported.marker").exists()


# ------------------------------------------------------------------ permissions


def test_a_new_session_database_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "new" / "s.sqlite"
    old_umask = os.umask(0o022)
    try:
        with SessionStore.open(path) as store:
            store.create_session("m", None)
            for name in ("s.sqlite", "s.sqlite-wal"):
                assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        os.umask(old_umask)


def test_the_agent_home_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.paths import agent_home, default_db_path

    monkeypatch.setenv("AGENT_HOME", str(tmp_path / "home"))
    old_umask = os.umask(0o022)
    try:
        home = agent_home()
        with SessionStore.open(default_db_path()) as store:
            store.create_session("m", None)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "sessions.sqlite").stat().st_mode) == 0o600
