"""Habits users bring from llm and Ollama (issue 19, items 1 and 6): a prompt on stdin, -c/--continue,
-s/--system, and `agent kb list` / `agent kb remove`. Each through the real command line, on a tiny
model and real SQLite files in a temporary AGENT_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent.cli import main
from agent.grammar.system_prompt import PROTOCOL_TEXT

FAST = ["--no-tools", "--max-new-tokens", "3"]


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AGENT_HOME (the session database) and AGENT_KB in a temporary folder."""
    folder = tmp_path / "agent-home"
    folder.mkdir()
    monkeypatch.setenv("AGENT_HOME", str(folder))
    monkeypatch.setenv("AGENT_KB", str(folder / "kb.sqlite"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def agent(*args: str, stdin: str | bytes = "") -> Result:
    """`agent ARGS` in process, with `stdin` as its (piped, not a terminal) standard input."""
    return CliRunner().invoke(main, list(args), input=stdin)


def clean_error(result: Result, status: int, *words: str) -> None:
    assert result.exit_code == status, (result.output, result.stderr)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def sessions() -> list[dict[str, Any]]:
    result = agent("sessions", "list", "--json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


def messages(session_id: str) -> list[dict[str, Any]]:
    result = agent("sessions", "export", session_id, "--format", "json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout)["messages"])


def user_texts(session_id: str) -> list[str]:
    return [m["text"] for m in messages(session_id) if m["role"] == "user"]


def system_text(session_id: str) -> str:
    return next(m["text"] for m in messages(session_id) if m["role"] == "system")


def ask(model: Path, *args: str, stdin: str | bytes = "") -> Result:
    result = agent("run", "--model", str(model), *FAST, *args, stdin=stdin)
    assert result.exit_code == 0, (result.output, result.stderr)
    return result


# -- the prompt on stdin --------------------------------------------------------------------------

def in_child(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """`agent ARGS` in a child process whose stdin is a real pipe (the REPL reads the file descriptor)."""
    done = subprocess.run([sys.executable, "-m", "agent.cli", *args], input=stdin, capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done


def test_a_piped_prompt_is_the_question(home: Path, tiny_model_dir: Path) -> None:
    # a real pipe into a real process: stdin is read to its end, the trailing newline dropped
    in_child("run", "--model", str(tiny_model_dir), *FAST, stdin="What is in the piped note?\nA second line.\n")
    (listed,) = sessions()
    assert user_texts(listed["id"]) == ["What is in the piped note?\nA second line."]


def test_argument_then_a_blank_line_then_stdin(home: Path, tiny_model_dir: Path) -> None:
    ask(tiny_model_dir, "Summarise this", stdin="line one\nline two\n")
    (listed,) = sessions()
    assert user_texts(listed["id"]) == ["Summarise this\n\nline one\nline two"]


def test_piped_bytes_that_are_not_utf8_are_replaced(home: Path, tiny_model_dir: Path) -> None:
    ask(tiny_model_dir, stdin=b"caf\xe9 au lait\n")
    (listed,) = sessions()
    assert user_texts(listed["id"]) == ["caf\ufffd au lait"]


def test_an_argument_with_empty_stdin_is_the_question(home: Path, tiny_model_dir: Path) -> None:
    ask(tiny_model_dir, "Just the argument", stdin="")
    (listed,) = sessions()
    assert user_texts(listed["id"]) == ["Just the argument"]


@pytest.mark.parametrize("stdin", ["", "  \n\n"])
def test_no_prompt_at_all_is_a_usage_error(home: Path, tiny_model_dir: Path, stdin: str) -> None:
    result = agent("run", "--model", str(tiny_model_dir), *FAST, stdin=stdin)
    clean_error(result, 2, "no prompt", "agent run")


# -- -c/--continue --------------------------------------------------------------------------------

def test_continue_takes_the_session_written_to_last(home: Path, tiny_model_dir: Path) -> None:
    ask(tiny_model_dir, "first session")
    ask(tiny_model_dir, "second session")
    first = next(row["id"] for row in sessions() if row["title"] == "first session")
    ask(tiny_model_dir, "back to the first", "--session", first)  # now the first was written to last
    ask(tiny_model_dir, "-c", "continued")
    listed = {row["title"]: row for row in sessions()}
    assert len(listed) == 2  # no new session
    assert user_texts(first) == ["first session", "back to the first", "continued"]
    assert listed["second session"]["turns"] == 1


def test_continue_with_a_piped_prompt(home: Path, tiny_model_dir: Path) -> None:
    ask(tiny_model_dir, "hello")
    ask(tiny_model_dir, "--continue", stdin="from a pipe\n")
    (listed,) = sessions()
    assert user_texts(listed["id"]) == ["hello", "from a pipe"]


def test_continue_with_nothing_saved_is_a_clear_error(home: Path, tiny_model_dir: Path) -> None:
    result = agent("run", "--model", str(tiny_model_dir), *FAST, "-c", "hi")
    clean_error(result, 1, "no saved session to continue")
    assert sessions() == []


@pytest.mark.parametrize(("extra", "named"), [(["--session", "abc"], "--session"), (["--no-save"], "--no-save"),
                                              (["-s", "Be brief."], "--system")])
def test_continue_with_a_clashing_option_is_a_usage_error(home: Path, extra: list[str], named: str) -> None:
    # checked before the model loads: the model folder does not even exist
    result = agent("run", "--model", str(home / "no-model"), "-c", *extra, "hi")
    clean_error(result, 2, "-c/--continue", named)
    assert "no-model" not in result.stderr


def test_chat_continues_the_latest_session(home: Path, tiny_model_dir: Path) -> None:
    ask(tiny_model_dir, "started by run")
    in_child("chat", "--model", str(tiny_model_dir), *FAST, "-c", stdin="said in chat\n")
    (listed,) = sessions()
    assert user_texts(listed["id"]) == ["started by run", "said in chat"]


# -- -s/--system ----------------------------------------------------------------------------------

def test_system_text_follows_the_tool_instructions(home: Path, tiny_model_dir: Path) -> None:
    result = agent("run", "--model", str(tiny_model_dir), "--max-new-tokens", "3", "-s", "Answer in French.",
                   "hello")
    assert result.exit_code == 0, (result.output, result.stderr)
    (listed,) = sessions()
    system = system_text(listed["id"])
    assert system.startswith(PROTOCOL_TEXT)  # the tool instructions stay
    assert system.endswith("\nAnswer in French.")  # the user's text after them, on its own line


def test_system_text_is_the_whole_prompt_without_tools(home: Path, tiny_model_dir: Path) -> None:
    ask(tiny_model_dir, "--system", "You are terse.", "hello")
    (listed,) = sessions()
    assert system_text(listed["id"]) == "You are terse."


def test_strategy_keeps_its_long_name(home: Path, tiny_model_dir: Path) -> None:
    result = agent("run", "--model", str(tiny_model_dir), *FAST, "--strategy", "greedy", "--json", "hello")
    assert result.exit_code == 0, (result.output, result.stderr)
    assert json.loads(result.stdout)["strategy"] == "greedy"


# -- agent kb list / remove -----------------------------------------------------------------------

def kb_listing() -> list[dict[str, Any]]:
    result = agent("kb", "list", "--json")
    assert result.exit_code == 0, (result.output, result.stderr)
    return list(json.loads(result.stdout))


def test_kb_list_shows_added_documents(home: Path, tmp_path: Path) -> None:
    (tmp_path / "alpha.md").write_text("# Alpha notes\nThe alpha text.\n", encoding="utf-8")
    (tmp_path / "beta.txt").write_text("beta", encoding="utf-8")
    assert agent("kb", "add", str(tmp_path / "alpha.md"), str(tmp_path / "beta.txt")).exit_code == 0
    added = {doc["title"]: doc for doc in kb_listing() if doc["path"]}
    assert set(added) == {"Alpha notes", "beta"}
    assert added["beta"]["chars"] == 4
    assert added["Alpha notes"]["path"] == str((tmp_path / "alpha.md").resolve())
    piped = agent("kb", "list").stdout.splitlines()  # CliRunner's stdout is not a terminal: tab-separated
    assert piped[0] == "id\tchars\ttitle\tsource"
    assert f"{added['beta']['id']}\t4\tbeta\t{added['beta']['path']}" in piped


def test_kb_remove_by_id_and_by_path(home: Path, tmp_path: Path) -> None:
    for name in ("one.txt", "two.txt", "three.txt"):
        (tmp_path / name).write_text(f"text of {name}", encoding="utf-8")
    assert agent("kb", "add", str(tmp_path)).exit_code == 0
    ids = {doc["title"]: doc["id"] for doc in kb_listing() if doc["path"]}
    result = agent("kb", "remove", str(ids["one"]), str(tmp_path / "two.txt"))
    assert result.exit_code == 0, (result.output, result.stderr)
    assert f"removed [{ids['one']}] one" in result.stdout
    assert {doc["title"] for doc in kb_listing() if doc["path"]} == {"three"}
    hits = agent("kb", "search", "text of two").stdout.splitlines()
    assert hits and not any(line.startswith((f"[{ids['one']}]", f"[{ids['two']}]")) for line in hits)  # the index too


def test_kb_remove_of_an_unknown_document_removes_nothing(home: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("keep me", encoding="utf-8")
    assert agent("kb", "add", str(tmp_path / "keep.txt")).exit_code == 0
    before = kb_listing()
    kept = next(doc for doc in before if doc["title"] == "keep")
    result = agent("kb", "remove", str(kept["id"]), "987654", str(tmp_path / "never-added.md"))
    clean_error(result, 1, "987654", "never-added.md", "nothing was removed")
    assert kb_listing() == before
