"""SessionStore against real SQLite files: round trips, migrations, upgrade, bad files, locks."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.sessions import schema
from agent.sessions.store import SessionNotFound, SessionStore, StoreError

FIXTURES = Path(__file__).parent / "fixtures"
ISLAND_REPLY = 'SEARCH("capital of France")\n=> [3] France: The capital of France is Paris.\nIt is Paris.'


def _turn(store: SessionStore, sid: str, turn: int, n_candidates: int = 3) -> None:
    store.add_message(sid, turn, "user", f"question {turn}: capital of France?")
    store.add_message(sid, turn, "assistant", ISLAND_REPLY)
    store.record_turn(
        sid, turn,
        config={"strategy": "tree", "seed": 7, "temperature": 0.8, "budget": 64, "grammar_hash": "g1",
                "temperatures": [1.5, 1.0, 0.5], "max_new_tokens": 64},
        tool_calls=[
            {"tool": "search", "args": {"query": "capital of France"}, "result": "[3] France: ...",
             "error": None, "seconds": 0.012, "pure": True, "speculative": False,
             "call_text": 'SEARCH("capital of France")'},
            {"tool": "search", "args": {"query": "France"}, "result": None, "error": "timed out",
             "seconds": 2.0, "pure": True, "speculative": True},
        ],
        candidates=[
            {"text": f"candidate {i}", "score": -1.0 - i, "token_count": 10 + i, "strategy": "tree",
             "parent": None if i == 0 else 0, "refined": i > 0, "score_before": -3.0 if i else None,
             "score_after": -2.0 if i else None, "grad_steps": 8 if i else None, "accepted": i == 1,
             "chosen": i == 0}
            for i in range(n_candidates)
        ],
        timings={"total": 1.25, "search": 1.0, "tools": 0.2},
        token_counts={"prompt_tokens": 40, "new_tokens": 12, "island_tokens": 9, "forward_passes": 30,
                      "backward_passes": 16},
    )


@pytest.fixture()
def store(tmp_path: Path):
    s = SessionStore.open(tmp_path / "s.sqlite")
    yield s
    s.close()


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "s.sqlite"
    with SessionStore.open(path) as store:
        sid = store.create_session("demo-model", "sha256:abc", title="geography")
        store.add_message(sid, 0, "system", "You are helpful.")
        _turn(store, sid, 1, n_candidates=1000)
        store.add_message(sid, 2, "user", "and Spain?")
        store.add_message(sid, 2, "assistant", "Madr", interrupted=True)
    with SessionStore.open(path) as store:
        assert store.get_session(sid) == {"id": sid, "created": store.get_session(sid)["created"],
                                          "model_id": "demo-model", "weights_hash": "sha256:abc",
                                          "title": "geography"}
        msgs = store.messages(sid)
        assert [(m["turn"], m["role"], m["interrupted"]) for m in msgs] == [
            (0, "system", False), (1, "user", False), (1, "assistant", False),
            (2, "user", False), (2, "assistant", True)]
        assert msgs[2]["text"] == ISLAND_REPLY
        (rec,) = store.turn_records(sid)
        assert rec["turn"] == 1 and rec["strategy"] == "tree" and rec["seed"] == 7 and rec["budget"] == 64
        assert rec["temperatures"] == [1.5, 1.0, 0.5] and rec["grammar_hash"] == "g1"
        assert rec["config"]["max_new_tokens"] == 64
        assert rec["timings"]["tools"] == 0.2 and rec["seconds"] == 1.25
        assert rec["token_counts"]["backward_passes"] == 16
        chosen, spec = rec["tool_calls"]
        assert chosen["args"] == {"query": "capital of France"} and chosen["chosen"] and not chosen["speculative"]
        assert spec["error"] == "timed out" and spec["speculative"] and not spec["chosen"]
        cands = rec["candidates"]
        assert len(cands) == 1000 and [c["idx"] for c in cands] == list(range(1000))
        assert cands[1]["parent"] == 0 and cands[1]["refined"] and cands[1]["accepted"] is True
        assert cands[0]["chosen"] and cands[0]["accepted"] is False and cands[0]["grad_steps"] is None
        assert store.next_turn(sid) == 3
        assert store.history(sid)[1] == {"role": "user", "content": "question 1: capital of France?"}
        (listed,) = store.list_sessions()
        assert listed["id"] == sid and listed["turns"] == 2 and listed["messages"] == 5


def test_plain_sqlite_sees_wal_tables_and_migrations(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionStore.open(path) as store:
        sid = store.create_session("m", None)
        _turn(store, sid, 1)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"sessions", "messages", "turns", "tool_calls", "candidate_sets", "messages_fts",
                "_migrations"} <= tables
        views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='view'")}
        assert "candidates" in views  # one row per candidate, unpacked from candidate_sets
        names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY id")]
        assert names == schema.all_names() and names[0] == "m001_initial"
        assert conn.execute("SELECT count(*) FROM candidates WHERE session_id = ?", (sid,)).fetchone()[0] == 3
        conn.close()
        # foreign keys are enforced on the store's connection
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with SessionStore.open(path) as store:  # reopening applies nothing twice
        assert store.schema_version() == schema.all_names()


def test_first_schema_version_upgrades_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    shutil.copy(FIXTURES / "sessions_v1.sqlite", path)
    before = sqlite3.connect(path)
    assert [r[0] for r in before.execute("SELECT name FROM _migrations")] == ["m001_initial"]
    columns = "id, session_id, turn, role, text, created, interrupted"  # version 1's (later ones add columns)
    old_rows = before.execute(f"SELECT {columns} FROM messages ORDER BY id").fetchall()
    before.close()
    with SessionStore.open(path) as store:
        assert store.schema_version() == schema.all_names()
        assert {s["id"] for s in store.list_sessions()} == {"a1b2c3d4e5f6", "0a0b0c0d0e0f"}
        msgs = store.messages("a1b2c3d4e5f6")
        assert msgs[4]["text"] == "The capital of Pe" and msgs[4]["interrupted"] is True
        # messages written before the index existed are searchable
        hits = store.search("Quechua")
        assert [(h["session_id"], h["role"]) for h in hits] == [("0a0b0c0d0e0f", "user")]
        assert store.turn_records("a1b2c3d4e5f6") == []
        assert store.next_turn("a1b2c3d4e5f6") == 3
        _turn(store, "a1b2c3d4e5f6", 3)  # new tables work on the old data
        assert len(store.turn_records("a1b2c3d4e5f6")[0]["candidates"]) == 3
    after = sqlite3.connect(path)
    assert after.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert after.execute(f"SELECT {columns} FROM messages WHERE id <= ? ORDER BY id",
                         (len(old_rows),)).fetchall() == old_rows


def test_fixture_is_what_the_first_migration_makes(tmp_path: Path) -> None:
    """The committed fixture matches its script (so it really is schema version 1)."""
    out = tmp_path / "v1.sqlite"
    subprocess.run([sys.executable, str(FIXTURES / "make_sessions_v1.py"), str(out)], check=True)
    schema_sql = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    made, committed = sqlite3.connect(out), sqlite3.connect(FIXTURES / "sessions_v1.sqlite")
    assert made.execute(schema_sql).fetchall() == committed.execute(schema_sql).fetchall()
    assert made.execute("SELECT * FROM messages").fetchall() == committed.execute("SELECT * FROM messages").fetchall()


def test_not_sqlite_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 50)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database") as err:
        SessionStore.open(path)
    assert str(path) in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_corrupt_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionStore.open(path) as store:
        sid = store.create_session("m", None)
        for turn in range(1, 4):
            _turn(store, sid, turn, n_candidates=200)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xde\xad\xbe\xef" * ((4096 - 100) // 4)  # smash the schema page, keep the header
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt") as err:
        SessionStore.open(path)
    assert str(path) in str(err.value) and "untouched" in str(err.value)
    assert path.read_bytes() == bytes(data)


def test_other_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another application"):
        SessionStore.open(path)
    assert path.read_bytes() == before


def test_directory_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        SessionStore.open(tmp_path)


def test_locked_database_gives_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SessionStore.open(path, timeout=0.3)
    sid = store.create_session("m", None)
    store.add_message(sid, 1, "user", "first")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(StoreError, match="locked by another process"):
        store.add_message(sid, 1, "assistant", "blocked")
    other.execute("ROLLBACK")
    store.add_message(sid, 1, "assistant", "after the lock")
    assert [m["text"] for m in store.messages(sid)] == ["first", "after the lock"]
    store.close()
    other.close()


def test_opening_a_database_locked_exclusively_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE _migrations (id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT, applied_at TEXT)")
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="locked"):
        SessionStore.open(path, timeout=0.3)
    holder.execute("ROLLBACK")
    holder.close()
    with SessionStore.open(path) as store:
        assert store.schema_version() == schema.all_names()


def test_record_turn_is_all_or_nothing(store: SessionStore) -> None:
    sid = store.create_session("m", None)
    with pytest.raises(StoreError):  # fails inside the transaction, after the turn row went in
        store.record_turn(sid, 1, config={"strategy": "greedy"},
                          tool_calls=[{"tool": "calc", "result": "ok"}, {"tool": "calc", "result": object()}],
                          candidates=[{"text": "ok"}], timings={}, token_counts={})
    assert store.turn_records(sid) == []
    assert store.db.execute("SELECT count(*) FROM candidates").fetchone()[0] == 0
    with pytest.raises(ValueError, match="candidate #1 has no 'text'"):
        store.record_turn(sid, 1, config={}, tool_calls=[], candidates=[{"text": "a"}, {"score": 1.0}],
                          timings={}, token_counts={})
    with pytest.raises(ValueError, match="tool call #0 has no 'tool'"):
        store.record_turn(sid, 1, config={}, tool_calls=[{"args": {}}], candidates=[], timings={}, token_counts={})
    assert store.turn_records(sid) == []


def test_bad_input_is_rejected_with_clear_errors(store: SessionStore) -> None:
    sid = store.create_session("m", None)
    with pytest.raises(ValueError, match="role must be one of system, user, assistant"):
        store.add_message(sid, 1, "robot", "hi")
    with pytest.raises(ValueError, match="turn must be an integer"):
        store.add_message(sid, -1, "user", "hi")
    with pytest.raises(SessionNotFound, match="no session 'nope'"):
        store.add_message("nope", 1, "user", "hi")
    with pytest.raises(SessionNotFound):
        store.record_turn("nope", 1, config={}, tool_calls=[], candidates=[], timings={}, token_counts={})
    with pytest.raises(KeyError):  # callers may catch it as a KeyError too
        store.messages("nope")
    assert store.messages(sid) == []


def test_resolve_id_accepts_unique_prefixes(store: SessionStore) -> None:
    ids = [store.create_session("m", None) for _ in range(17)]  # 17 ids: two share a first hex digit
    for sid in ids:
        assert store.resolve_id(sid) == sid
        assert store.resolve_id(sid[:10]) == sid
    first = [sid[0] for sid in ids]
    shared = next(c for c in first if first.count(c) > 1)
    with pytest.raises(SessionNotFound, match="ambiguous"):
        store.resolve_id(shared)
    with pytest.raises(SessionNotFound, match="no session matches 'zz'"):
        store.resolve_id("zz")
    with pytest.raises(SessionNotFound):
        store.resolve_id("%")


def test_search_ranks_matches_and_tolerates_query_syntax(store: SessionStore) -> None:
    a = store.create_session("m", None)
    b = store.create_session("m", None)
    store.add_message(a, 1, "user", "What is the capital of France?")
    store.add_message(a, 1, "assistant", "Paris is the capital of France. France France.")
    store.add_message(b, 1, "user", "Tell me about NOT-operators and \"quotes\" (parentheses)")
    hits = store.search("capital France")
    assert {h["session_id"] for h in hits} == {a} and len(hits) == 2
    assert hits[0]["role"] == "assistant"  # more matches ranks first
    for q in ['NOT-operators', '"quotes', "(parentheses)", "AND OR NOT", "*"]:
        store.search(q)  # never an FTS syntax error
    assert [h["session_id"] for h in store.search("NOT-operators")] == [b]
    assert store.search("   ") == []


def test_delete_removes_everything_of_that_session_only(store: SessionStore) -> None:
    keep, gone = store.create_session("m", None), store.create_session("m", None)
    for sid in (keep, gone):
        _turn(store, sid, 1)
    store.delete(gone)
    with pytest.raises(SessionNotFound):
        store.get_session(gone)
    for table in ("messages", "turns", "tool_calls", "candidates"):
        rows = store.db.execute(f"SELECT DISTINCT session_id FROM {table}").fetchall()
        assert rows == [(keep,)], table
    assert store.search("capital") and all(h["session_id"] == keep for h in store.search("capital"))
    assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_non_json_values_do_not_lose_the_turn(store: SessionStore) -> None:
    sid = store.create_session("m", None)
    store.record_turn(sid, 1, config={"strategy": "greedy", "path": Path("/x")},
                      tool_calls=[{"tool": "load", "args": {"id": 3, "where": Path("/kb")}, "result": "ok",
                                   "error": None, "seconds": 0.0}],
                      candidates=[{"text": "a", "score": float("nan")}, {"text": "b", "score": float("-inf")}],
                      timings={"total": 0.1}, token_counts={})
    (rec,) = store.turn_records(sid)
    assert rec["config"]["path"] == "/x" and rec["tool_calls"][0]["args"] == {"id": 3, "where": "/kb"}
    assert rec["candidates"][0]["score"] is None and rec["candidates"][1]["score"] == float("-inf")
    json.dumps(rec["config"])


def test_threads_sharing_one_store_lose_nothing(store: SessionStore) -> None:
    """A REPL may write from its input thread and its generation thread through one store."""
    import threading

    sid = store.create_session("m", None)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for turn in range(1, 21):
                store.add_message(sid, turn, "user", f"thread {k} turn {turn}")
                store.record_turn(sid, turn, config={"strategy": "greedy"}, tool_calls=[],
                                  candidates=[{"text": f"{k}-{turn}-{i}"} for i in range(20)],
                                  timings={}, token_counts={})
                store.list_sessions()
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.messages(sid)) == 80
    records = store.turn_records(sid)
    assert len(records) == 80 and all(len(r["candidates"]) == 20 for r in records)
    assert all(len({c["text"].split("-")[0] for c in r["candidates"]}) == 1 for r in records)


def _schema_v5_with_candidates(path: Path, candidates: list[dict]) -> None:
    """A database as the schema stood before m006: one row per candidate, of session abc123, turn 1."""
    from sqlite_utils import Database

    db = Database(path)
    schema.migrations.apply(db, stop_before="m006_candidate_sets")
    db.table("sessions").insert({"id": "abc123", "created": "2026-01-01", "model_id": "m"})
    turn_id = db.table("turns").insert({"session_id": "abc123", "turn": 1, "created": "2026-01-01",
                                        "strategy": "tree", "config": "{}"}).last_pk
    db.table("candidates").insert_all([{"turn_id": turn_id, "session_id": "abc123", "turn": 1, "idx": i, **c}
                                       for i, c in enumerate(candidates)])
    db.close()


def test_candidate_rows_of_schema_v5_are_packed_by_the_upgrade(tmp_path: Path) -> None:
    """A database written before m006 (one row per candidate) keeps every candidate after the upgrade."""
    path = tmp_path / "v5.sqlite"
    _schema_v5_with_candidates(path, [
        {"parent_idx": None if i == 0 else 0,
         "text": f"answer {i}", "score": -float(i), "token_count": i + 1, "strategy": "tree",
         "refined": int(i == 2), "score_before": -3.0 if i == 2 else None, "score_after": -2.0 if i == 2 else None,
         "grad_steps": 4 if i == 2 else None, "accepted": 1 if i == 2 else None, "chosen": int(i == 0)}
        for i in range(3)])
    with SessionStore.open(path) as store:
        assert store.schema_version() == schema.all_names()
        (rec,) = store.turn_records("abc123")
        assert [c["text"] for c in rec["candidates"]] == ["answer 0", "answer 1", "answer 2"]
        assert rec["candidates"][2] == {"idx": 2, "parent": 0, "text": "answer 2", "score": -2.0, "token_count": 3,
                                        "strategy": "tree", "refined": True, "score_before": -3.0,
                                        "score_after": -2.0, "grad_steps": 4, "accepted": True, "chosen": False}
        assert rec["candidate_stats"] == {"count": 3, "best_score": 0.0, "refined": 1, "accepted": 1}
        # plain SQL still sees one row per candidate, through the view
        rows = store.db.execute("SELECT idx, text, score FROM candidates ORDER BY idx").fetchall()
        assert rows == [(0, "answer 0", 0.0), (1, "answer 1", -1.0), (2, "answer 2", -2.0)]


def test_infinite_scores_of_schema_v5_stay_readable_after_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "v5inf.sqlite"
    _schema_v5_with_candidates(path, [{"text": t, "score": score, "refined": 0, "chosen": 0}
                                      for t, score in [("a", -1.5), ("b", float("-inf"))]])
    with SessionStore.open(path) as store:
        (rec,) = store.turn_records("abc123")
        assert [c["score"] for c in rec["candidates"]] == [-1.5, float("-inf")]
        rows = store.db.execute("SELECT text, score FROM candidates ORDER BY idx").fetchall()
        assert rows == [("a", -1.5), ("b", "-inf")]
