"""The knowledge base under concurrent writers, failures, hostile folders, huge and hostile documents.

Most tests drive the real command (`python -m agent.cli kb ...`) in a child process with its own
AGENT_HOME and AGENT_KB, and look at the result the way a user would: what SEARCH and LOAD return,
what the command printed, its exit status, the file's permissions.
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import sqlite3
import stat
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils

from agent.tools import kb
from agent.tools.load import load
from agent.tools.search import search
from privileges import without_root_override


@pytest.fixture()
def kb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """AGENT_HOME and AGENT_KB in a temporary folder, here and for the child processes."""
    home = tmp_path / "home"
    monkeypatch.setenv("AGENT_HOME", str(home))
    monkeypatch.setenv("AGENT_KB", str(home / "kb.sqlite"))
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def agent(env: dict[str, str], *args: str, preexec: Callable[[], None] | None = None,
          ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env, capture_output=True,
                          timeout=300, preexec_fn=preexec)


def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agent.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def word(tag: str, n: int) -> str:
    """A word no shipped document contains (FTS tokens: letters only, so n is spelled in letters)."""
    return "zq" + tag + "".join("abcdefghij"[int(d)] for d in str(n))


def write_notes(folder: Path, tag: str, count: int) -> list[str]:
    folder.mkdir(parents=True)
    words = [word(tag, i) for i in range(count)]
    for i, w in enumerate(words):
        (folder / f"note{i:03d}.md").write_text(f"# Note {tag} {i}\nThis note is about {w}.\n")
    return words


def dump(file: Path) -> list[str]:
    """The database as SQL statements, read through a read-only connection."""
    conn = sqlite3.connect(file.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def found(w: str) -> bool:
    return w in search(w)


def test_three_concurrent_kb_adds_keep_every_document(kb_env: dict[str, str], tmp_path: Path) -> None:
    folders = {tag: tmp_path / f"notes-{tag}" for tag in ("a", "b", "c")}
    words = {tag: write_notes(folder, tag, 60) for tag, folder in folders.items()}
    procs = [start(kb_env, "kb", "add", str(folder)) for folder in folders.values()]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err.decode() for _, err in outputs]
    missing = [w for ws in words.values() for w in ws if not found(w)]
    assert missing == []
    ids = [line.split("]")[0] for out, _ in outputs for line in out.decode().splitlines() if line.startswith("[")]
    assert len(ids) == 180 and len(set(ids)) == 180  # every document got its own id
    # adding a folder again updates its documents in place: same ids, nothing duplicated
    (folders["a"] / "note000.md").write_text("# Note a 0\nRewritten about zqnewword.\n")
    again = agent(kb_env, "kb", "add", str(folders["a"]))
    assert again.returncode == 0
    assert sorted(again.stdout.decode().splitlines()[:-1]) == sorted(outputs[0][0].decode().splitlines()[:-1])
    assert found("zqnewword") and not found(words["a"][0])


def test_a_failing_kb_add_leaves_the_knowledge_base_as_it_was(kb_env: dict[str, str], tmp_path: Path) -> None:
    first = write_notes(tmp_path / "first", "f", 3)
    assert agent(kb_env, "kb", "add", str(tmp_path / "first")).returncode == 0
    file = Path(kb_env["AGENT_KB"])
    before = dump(file)
    many = write_notes(tmp_path / "many", "m", 300)

    def small_files() -> None:  # the disk "fills up" 8 KiB past the knowledge base's size
        resource.setrlimit(resource.RLIMIT_FSIZE, (file.stat().st_size + 8192, resource.RLIM_INFINITY))

    failed = agent(kb_env, "kb", "add", str(tmp_path / "many"), preexec=small_files)
    err = failed.stderr.decode()
    assert failed.returncode == 1 and "Traceback" not in err
    assert str(file) in err and "nothing was added" in err
    assert not any(found(w) for w in many)  # not one of the 300 documents
    assert all(found(w) for w in first)
    assert dump(file) == before  # every table as it was (free pages may hold other bytes)
    assert agent(kb_env, "kb", "add", str(tmp_path / "many")).returncode == 0  # and it still works
    assert all(found(w) for w in many)


def test_kb_add_does_not_follow_links_out_of_the_folder(kb_env: dict[str, str], tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\nzqsecretword\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "inside.md").write_text("# Inside\nzqinsideword\n")
    (notes / "alias.md").symlink_to(notes / "inside.md")  # leads inside: the same document, once
    (notes / "passwd.txt").symlink_to("/etc/passwd")
    (notes / "secret.md").symlink_to(outside / "secret.md")
    (notes / "elsewhere").symlink_to(outside, target_is_directory=True)
    (notes / "loop.md").symlink_to(notes / "loop.md")
    (notes / "broken.md").symlink_to(notes / "missing.md")
    res = agent(kb_env, "kb", "add", str(notes))
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 1 and "Traceback" not in err
    assert out.count("] Inside") == 1 and "indexed 1 document" in out and "skipped 5 paths (listed above)" in out
    assert f"skipped {notes / 'loop.md'}: cannot read: Too many levels of symbolic links" in err
    assert f"skipped {notes / 'broken.md'}: cannot read: No such file or directory" in err
    for name in ("passwd.txt", "secret.md", "elsewhere"):
        assert f"skipped {notes / name}: symbolic link to" in err and "outside" in err
    assert found("zqinsideword") and not found("zqsecretword")
    assert search("root daemon nologin") == "no results"
    # a link named on the command line is the user's choice: followed
    assert agent(kb_env, "kb", "add", str(notes / "secret.md")).returncode == 0
    assert found("zqsecretword")


def test_kb_add_lists_unreadable_files_and_folders(kb_env: dict[str, str], tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    (notes / "locked").mkdir(parents=True)
    (notes / "locked" / "hidden.md").write_text("# Hidden\nzqhiddenword\n")
    (notes / "closed.md").write_text("# Closed\nzqclosedword\n")
    (notes / "open.md").write_text("# Open\nzqopenword\n")
    (notes / "locked").chmod(0)
    (notes / "closed.md").chmod(0)
    try:
        res = agent(kb_env, "kb", "add", str(notes), preexec=without_root_override)
    finally:
        (notes / "locked").chmod(0o755)
    err = res.stderr.decode()
    assert res.returncode == 1 and "Traceback" not in err
    assert f"skipped {notes / 'locked'}: cannot read directory: Permission denied" in err
    assert f"skipped {notes / 'closed.md'}: cannot read: Permission denied" in err
    assert found("zqopenword") and not found("zqhiddenword") and not found("zqclosedword")


def test_kb_add_skips_files_that_are_not_utf8_and_indexes_the_rest(kb_env: dict[str, str], tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "latin1.txt").write_bytes("café zqlatinword".encode("latin-1"))
    (notes / "good.md").write_text("# Good\nzqgoodword\n")
    res = agent(kb_env, "kb", "add", str(notes))
    assert res.returncode == 1
    assert f"skipped {notes / 'latin1.txt'}: not UTF-8 text (invalid byte at offset 3)" in res.stderr.decode()
    assert "[" in res.stdout.decode() and found("zqgoodword") and not found("zqlatinword")


def test_kb_add_skips_files_over_the_size_limit(kb_env: dict[str, str], tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "huge.txt").write_text("zqhugeword " * 100_000)  # 1.1 MB, over the default 1 MiB
    (notes / "mid.txt").write_text("zqmidword " * 300)  # 3,000 bytes
    (notes / "small.txt").write_text("zqsmallword\n")
    default = agent(kb_env, "kb", "add", str(notes))
    assert default.returncode == 1
    assert f"skipped {notes / 'huge.txt'}: 1100000 bytes, over the limit of 1048576 (--max-bytes)" \
        in default.stderr.decode()
    assert found("zqmidword") and found("zqsmallword") and not found("zqhugeword")
    tight = agent(kb_env, "kb", "add", "--max-bytes", "1000", str(notes / "mid.txt"))
    assert tight.returncode == 1 and "over the limit of 1000" in tight.stderr.decode()
    assert agent(kb_env, "kb", "add", "--max-bytes", "2000000", str(notes)).returncode == 0
    assert found("zqhugeword")


def test_the_knowledge_base_file_is_private(kb_env: dict[str, str], tmp_path: Path) -> None:
    note = tmp_path / "n.md"
    note.write_text("# N\nzqprivateword\n")
    assert agent(kb_env, "kb", "add", str(note)).returncode == 0
    assert stat.S_IMODE(Path(kb_env["AGENT_KB"]).stat().st_mode) == 0o600


def test_search_on_a_huge_document_reads_only_its_snippet(kb_env: dict[str, str], tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    line = "The   capital of\tzqbigword is a city.\n"
    big.write_text(line * (20_000_000 // len(line)))  # 20 MB
    added = agent(kb_env, "kb", "add", "--max-bytes", "30000000", str(big))
    assert added.returncode == 0
    tracemalloc.start()
    try:
        hit = search("zqbigword")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    doc_id = added.stdout.decode().split("]")[0]
    assert hit == f"{doc_id}] big: " + " ".join((line * 10).split())[:200]  # as if the whole text were flattened
    assert peak < 2_000_000  # bytes allocated while searching: the snippet, not the 20 MB text


@pytest.mark.parametrize("text", [
    "", "   ", "a", " a  b ", "x" * 1000, " " * 5000 + "late word", ("w " * 99) + " " * 3000 + "tail" * 80,
    "\u2028a\u3000b\x1cc\x85d " * 60, "a\n" * 150, "y" * 199 + " " * 900 + "z",
])
def test_snippets_equal_the_whole_text_flattened(text: str) -> None:
    assert kb.snippet_of(text) == " ".join(text.split())[:200]


def test_snippets_of_random_texts() -> None:
    rng = random.Random(18)
    alphabet = "ab \t\n\u00a0\u2003x\r"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 3000)))
        assert kb.snippet_of(text) == " ".join(text.split())[:200]


def test_a_knowledge_base_from_an_earlier_version_is_upgraded(kb_env: dict[str, str], tmp_path: Path) -> None:
    file = Path(kb_env["AGENT_KB"])
    file.parent.mkdir(parents=True)
    old = sqlite_utils.Database(file)  # the layout earlier versions wrote (sqlite-utils' FTS)
    old["docs"].create({"id": int, "title": str, "text": str, "path": str}, pk="id", not_null={"title", "text"})
    old["docs"].enable_fts(["title", "text"], create_triggers=True, tokenize="unicode61")
    old["docs"].insert_all([{"id": 1, "title": "Tea", "text": "Tea is\n\nbrewed zqteaword."},
                            {"id": 5, "title": "Milk", "text": "Milk zqmilkword."}])
    old.close()
    assert search("zqteaword") == "[1] Tea: Tea is brewed zqteaword."
    note = tmp_path / "n.md"
    note.write_text("# Coffee\nzqcoffeeword\n")
    res = agent(kb_env, "kb", "add", str(note))
    assert res.returncode == 0 and res.stdout.decode().startswith("[6] Coffee\n")
    assert load(5) == "Milk: Milk zqmilkword."


def test_a_database_that_is_not_a_knowledge_base_is_refused_untouched(kb_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    sessions = tmp_path / "sessions.sqlite"
    conn = sqlite3.connect(sessions)
    conn.execute("PRAGMA application_id = 1095192148")  # the session store's mark ("AGNT")
    conn.commit()
    conn.close()
    note = tmp_path / "n.md"
    note.write_text("# N\nzqnoteword\n")
    for file, why in ((other, "it has other tables (invoices)"), (sessions, "its application id is 0x41474e54")):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        env = {**kb_env, "AGENT_KB": str(file)}
        for args in (("kb", "add", str(note)), ("kb", "search", "anything")):
            res = agent(env, *args)
            err = res.stderr.decode()
            assert res.returncode == 1 and "Traceback" not in err
            assert f"is not a knowledge base: {why}" in err and "left untouched" in err
        assert hashlib.sha256(file.read_bytes()).hexdigest() == digest


def test_terminal_escapes_in_documents_never_reach_the_terminal(kb_env: dict[str, str], tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    evil = "# Clip \x1b]52;c;ZXZpbA==\x07 board\r\n\x1b[2J zqevilword \x1b]52;c;ZXZpbA==\x07\rgone\x9b31m\n"
    (notes / "evil.md").write_text(evil)
    (notes / "bad\x1b[2Jname\r.txt").write_bytes(b"\xff\xfe zqbadword")  # listed as skipped: by name
    added = agent(kb_env, "kb", "add", str(notes))
    searched = agent(kb_env, "kb", "search", "zqevilword")
    for res in (added, searched):
        shown = res.stdout + res.stderr
        assert b"\x1b" not in shown and b"\r" not in shown and b"\x07" not in shown and b"\xc2\x9b" not in shown
    assert added.returncode == 1 and "bad␛[2Jname␍.txt" in added.stderr.decode()
    assert "Clip ␛]52;c;ZXZpbA==␇ board" in added.stdout.decode()
    assert "␛[2J zqevilword" in searched.stdout.decode()
    doc_id = int(added.stdout.decode().split("]")[0].lstrip("["))
    assert load(doc_id) == "Clip \x1b]52;c;ZXZpbA==\x07 board: " + evil  # stored exactly
