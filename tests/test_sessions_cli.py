"""`agent sessions ...` and `agent replay` through click's test runner, on real SQLite files."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from agent.cli.sessions import replay_command, sessions_command_group
from agent.config import DecodeConfig
from agent.render import render_session, segments
from agent.sessions.store import SessionStore

REPLY = 'SEARCH("capital of France")\n=> [3] France: The capital of France is Paris.\nThe capital of France is Paris.'


def _make_session(db: Path, title: str | None = None) -> str:
    with SessionStore.open(db) as store:
        sid = store.create_session("demo-model", "sha256:abc", title=title)
        store.add_message(sid, 0, "system", "You are a helpful assistant.")
        store.add_message(sid, 1, "user", "What is the capital of France?")
        store.add_message(sid, 1, "assistant", REPLY)
        store.record_turn(
            sid, 1, config=DecodeConfig(strategy="tree", seed=5).to_dict(),
            tool_calls=[{"tool": "search", "args": {"query": "capital of France"},
                         "result": "[3] France: The capital of France is Paris.", "error": None,
                         "seconds": 0.003, "pure": True, "speculative": False,
                         "call_text": 'SEARCH("capital of France")',
                         "island_text": "\n=> [3] France: The capital of France is Paris.\n"},
                        {"tool": "search", "args": {"query": "France"}, "result": "[1] ...", "error": None,
                         "seconds": 0.001, "pure": True, "speculative": True}],
            candidates=[{"text": REPLY, "score": -0.5, "token_count": 20, "strategy": "tree", "chosen": True},
                        {"text": "Lyon.", "score": -4.0, "token_count": 3, "strategy": "tree"}],
            timings={"total": 0.8}, token_counts={"new_tokens": 20, "forward_passes": 30},
        )
        store.add_message(sid, 2, "user", "And Spain?")
        store.add_message(sid, 2, "assistant", "The capital of Sp", interrupted=True)
    return sid


def _invoke(cmd: Any, args: list[str], **kw: Any):
    return CliRunner().invoke(cmd, args, catch_exceptions=False, **kw)


def test_default_database_lives_in_agent_home(agent_home: Path) -> None:
    result = _invoke(sessions_command_group, ["list"])
    assert result.exit_code == 0 and "no sessions yet" in result.output
    assert (agent_home / "sessions.sqlite").is_file()
    sid = _make_session(agent_home / "sessions.sqlite")
    rows = json.loads(_invoke(sessions_command_group, ["list", "--json"]).output)
    assert [r["id"] for r in rows] == [sid]


def test_list_shows_id_start_model_turns_title(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sid = _make_session(db, title="geography quiz")
    other = _make_session(db)
    rows = json.loads(_invoke(sessions_command_group, ["list", "--json", "--db", str(db)]).output)
    assert [r["id"] for r in rows] == [other, sid]  # newest first
    assert rows[1]["model_id"] == "demo-model" and rows[1]["turns"] == 2 and rows[1]["title"] == "geography quiz"
    assert rows[0]["title"] == "What is the capital of France?"  # untitled: first question
    table = _invoke(sessions_command_group, ["list", "--db", str(db)]).output
    for word in ("id", "started", "model", "turns", "title", sid, "demo-model", "geography quiz"):
        assert word in table


def test_show_marks_islands_tool_calls_and_interruptions(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sid = _make_session(db)
    out = _invoke(sessions_command_group, ["show", sid[:5], "--db", str(db)]).output
    assert "turn 1 · tree seed=5" in out
    assert "user: What is the capital of France?" in out
    assert "=> [3] France: The capital of France is Paris." in out
    assert "tool call: search(query='capital of France') -> [3] France: The capital of France is Paris." in out
    assert "(+1 speculative tool call off the chosen path)" in out
    assert "2 candidates · best score -0.500 · 0 refined, 0 accepted" in out
    assert "The capital of Sp  [interrupted]" in out


def test_render_styles_calls_and_islands_apart_from_model_text(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sid = _make_session(db)
    console = Console(record=True, force_terminal=True, color_system="truecolor", width=200)
    with SessionStore.open(db) as store:
        render_session(store, sid, console)
        calls = store.turn_records(sid)[0]["tool_calls"]  # the response's calls, as stored
    html = console.export_html(inline_styles=True)
    # the island and the call carry their own colours; the model's own sentence does not
    assert "color: #008000" in html.split("=&gt; [3] France")[0].rsplit("<span", 1)[1]
    assert "color: #808000" in html.split('SEARCH(&quot;capital')[0].rsplit("<span", 1)[1]
    assert segments(REPLY, calls) == [("call", 'SEARCH("capital of France")\n'),
                               ("island", "=> [3] France: The capital of France is Paris."),
                               ("text", "\nThe capital of France is Paris.")]
    text = 'CALL(note, text="a ) tricky \\" one")\n=> saved\nok => not an island'
    note = {"call_text": 'CALL(note, text="a ) tricky \\" one")', "island_text": "\n=> saved\n", "chosen": True}
    assert [k for k, _ in segments(text, [note])] == ["call", "island", "text"]


def test_render_never_passes_terminal_control_codes_through(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with SessionStore.open(db) as store:
        sid = store.create_session("m", None)
        store.add_message(sid, 1, "user", "clear my screen")
        store.add_message(sid, 1, "assistant", "sure\x1b[2J\x1b]0;owned\x07\rdone")
    out = _invoke(replay_command, [sid, "--db", str(db)]).output
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "sure␛[2J␛]0;owned␇␍done" in out


def test_export_json_holds_messages_tool_calls_candidates_and_config(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sid = _make_session(db)
    data = json.loads(_invoke(sessions_command_group, ["export", sid, "--format", "json", "--db", str(db)]).output)
    assert data["format"] == "agent-session" and data["session"]["id"] == sid
    assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert data["messages"][2]["text"] == REPLY and data["messages"][4]["interrupted"] is True
    (turn,) = data["turns"]
    assert turn["config"] == DecodeConfig(strategy="tree", seed=5).to_dict()
    assert turn["tool_calls"][0]["args"] == {"query": "capital of France"}
    assert [c["score"] for c in turn["candidates"]] == [-0.5, -4.0]
    out = tmp_path / "chat.json"
    _invoke(sessions_command_group, ["export", sid[:4], "-o", str(out), "--db", str(db)])
    assert json.loads(out.read_text()) == data


def test_export_markdown_is_a_readable_transcript(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sid = _make_session(db, title="quiz")
    md = _invoke(sessions_command_group, ["export", sid, "--format", "markdown", "--db", str(db)]).output
    assert md.startswith("# quiz\n")
    assert "## Turn 1" in md and "## Turn 2" in md
    assert "```text\n" + REPLY + "\n```" in md
    assert '- `search(query="capital of France")` → `[3] France: The capital of France is Paris.`' in md
    assert "**assistant** *(interrupted)*" in md
    assert "2 candidates, best score -0.5000" in md


def test_search_finds_messages_across_sessions(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sid = _make_session(db)
    out = _invoke(sessions_command_group, ["search", "Spain", "--db", str(db)]).output
    assert out.strip() == f"{sid}  turn 2  user: And Spain?"
    hits = json.loads(_invoke(sessions_command_group, ["search", "capital", "--json", "--db", str(db)]).output)
    assert {h["role"] for h in hits} == {"user", "assistant"}
    assert "no message matches" in _invoke(sessions_command_group, ["search", "zebra", "--db", str(db)]).output


def test_delete_asks_unless_yes(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sid = _make_session(db)
    refused = CliRunner().invoke(sessions_command_group, ["delete", sid[:6], "--db", str(db)], input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert len(json.loads(_invoke(sessions_command_group, ["list", "--json", "--db", str(db)]).output)) == 1
    done = _invoke(sessions_command_group, ["delete", sid[:6], "--yes", "--db", str(db)])
    assert done.exit_code == 0 and f"deleted {sid}" in done.output
    assert json.loads(_invoke(sessions_command_group, ["list", "--json", "--db", str(db)]).output) == []


@pytest.mark.parametrize("args", [["show", "ffff"], ["export", "ffff"], ["delete", "ffff", "--yes"]])
def test_unknown_id_is_a_clean_error(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "s.sqlite"
    _make_session(db)
    result = CliRunner().invoke(sessions_command_group, [*args, "--db", str(db)])
    assert result.exit_code == 1 and "Error: no session matches 'ffff'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_corrupt_database_is_a_clean_error_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    db.write_bytes(b"PK\x03\x04 this is a zip file, not sessions")
    for cmd, args in [(sessions_command_group, ["list"]), (replay_command, ["abc"])]:
        result = CliRunner().invoke(cmd, [*args, "--db", str(db)])
        assert result.exit_code == 1 and "is not a SQLite database" in result.output and str(db) in result.output
    assert db.read_bytes() == b"PK\x03\x04 this is a zip file, not sessions"


def test_every_help_has_an_example() -> None:
    for cmd, args in [(sessions_command_group, []), (replay_command, [])] + [
        (sessions_command_group, [name]) for name in ("list", "show", "export", "search", "delete")
    ]:
        out = _invoke(cmd, [*args, "--help"]).output
        assert "Example:" in out and "agent " in out.split("Example:")[1], args


def test_replay_renders_the_session(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sid = _make_session(db)
    result = _invoke(replay_command, [sid[:3], "--db", str(db)])
    assert result.exit_code == 0
    assert result.output.index("── turn 1") < result.output.index("── turn 2")
    assert "=> [3] France" in result.output


def _tiny_runner(tiny_lm: Any, seen: list[str]):
    """The same pipeline as `agent.rerun.rerun_turn`, on the test's tiny model (no tools)."""
    from agent.turn import ChatSession

    fields = {f.name for f in dataclasses.fields(DecodeConfig)}

    def run_turn(model_id: str, history: list[dict[str, str]], user_text: str, config: dict[str, Any]) -> str:
        seen.append(model_id)
        session = ChatSession(tiny_lm, None, DecodeConfig(**{k: v for k, v in config.items() if k in fields}),
                              system_prompt="")
        session.messages = list(history)
        return session.ask(user_text).response

    return run_turn


def test_rerun_of_a_seeded_session_is_identical_and_a_changed_turn_is_a_diff(tiny_lm: Any, tmp_path: Path) -> None:
    from agent.turn import ChatSession

    db = tmp_path / "s.sqlite"
    store = SessionStore.open(db)
    config = DecodeConfig(strategy="sample", seed=11, temperature=1.0, top_k=40, max_new_tokens=16)
    chat = ChatSession(tiny_lm, None, config, store=store)
    replies = [chat.ask(q).response for q in ("hello there", "tell me more", "and then?")]
    assert len(set(replies)) > 1  # sampled text, not a constant
    sid = chat.session_id
    assert sid is not None
    store.close()

    seen: list[str] = []
    result = CliRunner().invoke(replay_command, [sid[:6], "--rerun", "--db", str(db)],
                                obj={"run_turn": _tiny_runner(tiny_lm, seen)})
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("turn ")] == [
        "turn 1: identical", "turn 2: identical", "turn 3: identical"]
    assert "3 identical, 0 not, 0 skipped, of 3 turns" in result.output
    assert seen == [tiny_lm.model_id] * 3

    conn = sqlite3.connect(db)
    # the last reply: earlier turns' context is unchanged, so they stay identical
    conn.execute("UPDATE messages SET text = text || ' (edited)' WHERE session_id = ? AND turn = 3 "
                 "AND role = 'assistant'", (sid,))
    conn.commit()
    conn.close()
    result = CliRunner().invoke(replay_command, [sid, "--rerun", "--db", str(db)],
                                obj={"run_turn": _tiny_runner(tiny_lm, [])})
    assert result.exit_code == 1
    assert "turn 3: different" in result.output and "--- turn 3 (stored)" in result.output
    assert "+++ turn 3 (rerun)" in result.output and "(edited)" in result.output
    assert "turn 1: identical" in result.output and "turn 2: identical" in result.output
    assert "2 identical, 1 not, 0 skipped, of 3 turns" in result.output


def test_agent_run_json_session_is_listed_exported_and_reruns_identically(tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    """Issue 4's acceptance, through the real `agent` command on the tiny model (tools on)."""
    from agent.cli import main

    db = tmp_path / "s.sqlite"
    run = CliRunner().invoke(main, ["run", "What is the capital of France?", "--json", "--model", str(tiny_model_dir),
                                    "--strategy", "sample", "--seed", "3", "--max-new-tokens", "12",
                                    "--db", str(db)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    answer = json.loads(run.output.strip().splitlines()[-1])
    sid = answer["session_id"]
    listed = json.loads(CliRunner().invoke(main, ["sessions", "list", "--json", "--db", str(db)]).output)
    assert [s["id"] for s in listed] == [sid] and listed[0]["model_id"] == str(tiny_model_dir)
    exported = json.loads(CliRunner().invoke(main, ["sessions", "export", sid, "--format", "json",
                                                    "--db", str(db)]).output)
    texts = [(m["role"], m["text"]) for m in exported["messages"] if m["role"] != "system"]
    assert texts == [("user", "What is the capital of France?"), ("assistant", answer["response"])]
    assert exported["turns"][0]["seed"] == 3 and exported["turns"][0]["strategy"] == "sample"
    assert [c["tool"] for c in exported["turns"][0]["tool_calls"]] == [c["tool"] for c in answer["tool_calls"]]
    rerun_result = CliRunner().invoke(main, ["replay", sid, "--rerun", "--db", str(db)], catch_exceptions=False)
    assert rerun_result.exit_code == 0, rerun_result.output
    assert "turn 1: identical" in rerun_result.output


def test_a_turn_stores_how_many_tokens_tool_results_wrote(tmp_path: Path) -> None:
    from agent.cli import main

    db = tmp_path / "s.sqlite"
    run = CliRunner().invoke(main, ["run", "What is 12 * 12?", "--json", "--db", str(db)], catch_exceptions=False)
    answer = json.loads(run.output.strip().splitlines()[-1])
    assert [c["tool"] for c in answer["tool_calls"]] == ["calc"]
    exported = json.loads(CliRunner().invoke(main, ["sessions", "export", answer["session_id"], "--format", "json",
                                                    "--db", str(db)]).output)
    counts = exported["turns"][0]["token_counts"]
    # the island `=> 144` is a few tokens the model never chose; the model wrote the rest
    assert 0 < counts["island_tokens"] < counts["new_tokens"]


def test_replay_trees_draws_the_search_tree_stored_with_each_turn(tmp_path: Path) -> None:
    from agent.cli import main

    db = tmp_path / "s.sqlite"
    run = CliRunner().invoke(main, ["run", "What is 12 * 12?", "--json", "--strategy", "tree", "--budget", "32",
                                    "--db", str(db)], catch_exceptions=False)
    sid = json.loads(run.output.strip().splitlines()[-1])["session_id"]
    plain_replay = _invoke(replay_command, [sid, "--db", str(db)]).output
    with_trees = _invoke(replay_command, [sid, "--trees", "--db", str(db)])
    assert with_trees.exit_code == 0, with_trees.output
    assert "search tree of turn" not in plain_replay
    drawn = with_trees.output.split("search tree of turn 1", 1)[1]
    assert re.search(r"turn 1: \d+ nodes stored", drawn)
    assert "=> 144" in drawn and "[call calc(" in drawn  # the island and the call made on the chosen branch
