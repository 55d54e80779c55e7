"""Model, tool and user text reaches the terminal filtered: no control characters, no rich markup.

A response can hold anything a model emits: escape sequences (clear screen, set title), bells,
carriage returns, C1 controls, and text that looks like rich markup (`[/x]` would crash a markup
parse). Every path that prints such text is driven here end to end and must neither pass a control
character through nor crash.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from agent.cli import main
from agent.config import DecodeConfig
from agent.decoding.progress import SearchProgress
from agent.decoding.results import Candidate, SearchResult
from agent.demo_model import demo_model_dir
from agent.grammar.tool_format import ToolFormat
from agent.model.runtime import load_model
from agent.render import printable, render_alts
from agent.repl import Repl
from agent.sessions.store import SessionStore
from agent.tooling.registry import default_registry
from agent.turn import ChatSession

HOSTILE = "sure\x1b[2J\x1b]0;owned\x07\rdone [/x] [bold]not bold\x9b\x7f"
SHOWN = "sure␛[2J␛]0;owned␇␍done [/x] [bold]not bold\ufffd␡"
CONTROLS = [chr(c) for c in range(32) if c not in (9, 10)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]


def assert_clean(text: str) -> None:
    leaked = sorted({repr(c) for c in text if c in CONTROLS})
    assert not leaked, f"control characters reached the terminal: {leaked}"


def test_printable_maps_every_control_but_tab_and_newline() -> None:
    assert printable(HOSTILE) == SHOWN
    assert printable("a\tb\nc") == "a\tb\nc"
    assert_clean(printable("".join(CONTROLS)))


def _hostile_session(db: Path) -> str:
    with SessionStore.open(db) as store:
        sid = store.create_session("model [/x]\x1b[31m", None, title="title \x1b[5m[/x]")
        store.add_message(sid, 1, "user", "question [/x] \x1b[1m")
        call_text = 'SEARCH("\x1b[2J")'
        store.add_message(sid, 1, "assistant", f"{call_text}\n=> found \x1b[31m[/x]\n{HOSTILE}")
        store.record_turn(
            sid, 1, config={"strategy": "tree", "seed": 1},
            tool_calls=[{"tool": "search", "args": {"query": "\x1b[2J"}, "result": "found \x1b[31m[/x]",
                         "error": None, "seconds": 0.01, "pure": True, "speculative": False,
                         "call_text": call_text, "island_text": "\n=> found \x1b[31m[/x]\n"},
                        {"tool": "note", "args": {"text": "[/x]"}, "result": None, "error": "boom \x07[/x]",
                         "seconds": None, "pure": False, "speculative": False, "call_text": None}],
            candidates=[{"text": HOSTILE, "score": -0.5}, {"text": "other \x1b[0m", "score": -1.0}],
            timings={"total": 0.1}, token_counts={"new_tokens": 7},
        )
    return sid


@pytest.mark.parametrize("command", [["sessions", "show"], ["replay"], ["sessions", "list"],
                                     ["sessions", "search", "done"], ["sessions", "search", "question"],
                                     ["sessions", "export", "--format", "markdown"]])
def test_stored_text_is_shown_filtered_by_every_sessions_command(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "s.sqlite"
    sid = _hostile_session(db)
    args = [*command, sid] if command[-1] in ("show", "replay", "markdown") else command
    result = CliRunner().invoke(main, [*args, "--db", str(db)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    if command[-1] == "markdown":  # to a pipe (CliRunner's output) the transcript is data, kept as written
        assert "[/x]" in result.output
        return
    assert_clean(result.output)
    assert "[/x]" in result.output  # printed as text, not parsed as markup
    if command[-1] in ("show", "replay"):
        assert SHOWN in result.output
        assert "tool call: search(query='\\x1b[2J') -> found ␛[31m[/x]" in result.output
        assert "error: boom ␇[/x]" in result.output


def test_tools_list_filters_a_tool_description(tmp_path: Path) -> None:
    tools_file = tmp_path / "hostile_tools.py"
    tools_file.write_text(
        "from agent.tooling import tool\n\n\n"
        "@tool\n"
        "def shout(text: str) -> str:\n"
        '    """Say it loud \\x1b[5m[/x] [red]."""\n'
        "    return text\n"
    )
    result = CliRunner().invoke(main, ["tools", "list", "--tools", str(tools_file)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert_clean(result.output)
    assert "Say it loud ␛[5m[/x] [red]." in result.output


@dataclass
class HostileAnswer:
    """What `ChatSession.ask` returns, as far as the REPL and `agent run` read it."""

    response: str = HOSTILE
    interrupted: bool = False
    search: SearchResult | None = None
    new_tokens: int = 3
    seconds: float = 0.01
    tool_calls: list = field(default_factory=list)
    unsaved: str | None = None
    context_notice: str | None = None
    context_limit: int | None = None
    context_used: int = 0
    turn: int = 1
    tool_route: dict | None = None


class HostileSession:
    """A session whose model streams control characters and markup, and whose errors quote them."""

    def __init__(self) -> None:
        self.lm = SimpleNamespace(model_id="hostile [/x]\x1b[31m", device="cpu", dtype="float32", tokenizer=None)
        self.config = DecodeConfig()
        self.registry = None
        self.tool_format = ToolFormat("protocol", None)  # calls in our protocol: the answer streams as it comes
        self.store = None
        self.last_result: HostileAnswer | None = None
        self.confirm = None

    def close(self) -> None:
        """Nothing to save: the REPL calls this on exit."""

    def ask(self, text: str, on_token: Callable[[str], None] | None = None,
            on_progress: Callable[[SearchProgress], None] | None = None) -> HostileAnswer:
        if text == "fail":
            raise ValueError(f"bad call {HOSTILE}")
        for piece in ("sure\x1b[2J", "\x1b]0;owned\x07", "\rdone [/x] ", "[bold]not bold\x9b\x7f"):
            if on_token is not None:
                on_token(piece)
        self.last_result = HostileAnswer()
        return self.last_result


def test_the_repl_filters_streamed_answers_errors_and_commands() -> None:
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("hello\rfail\r/[/x]\r/set [/x]=1\r/model\r/exit\r")
        Repl(HostileSession(), input=pipe, output=DummyOutput(), out=out, history=InMemoryHistory()).run()
    text = out.getvalue()
    assert_clean(text)
    assert SHOWN in text  # the streamed answer
    assert f"error: bad call {SHOWN}" in text
    assert "unknown command /[/x]" in text and "[/x]" in text


def test_agent_run_streams_the_answer_filtered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.cli.conversation.build_session", lambda opts, confirm, session_id: HostileSession())
    result = CliRunner().invoke(main, ["run", "hello"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert_clean(result.output)
    assert SHOWN in result.output


def test_alts_table_shows_candidate_text_filtered() -> None:
    best = Candidate(text=HOSTILE, token_ids=[1, 2], island_mask=[False, False], logprobs=[-0.1, -0.2],
                     score=-0.15, strategy="tree [/x]")
    other = Candidate(text="other \x1b[0m[/x]", token_ids=[3], island_mask=[False], logprobs=[-1.0], score=-1.0,
                      strategy="tree")
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(render_alts(SearchResult(best=best, candidates=[best, other], strategy="tree")))
    text = console.file.getvalue()
    assert_clean(text)
    assert "tree [/x]" in text and "other ␛[0m[/x]" in text


def test_markdown_export_heading_is_text_and_no_control_reaches_a_file(tmp_path: Path) -> None:
    """The title (else the first question) becomes the heading: HTML and Markdown in it are escaped
    as text; control characters anywhere in the transcript are shown as symbols, even written to a
    pipe or a file (`cat chat.md` must not drive a terminal). The JSON export stays exact."""
    hostile = "<script>x</script> [a](j:b) *b* &lt; # \x1b]52;c;A\x07"  # under 60 characters
    heading = "# \\<script\\>x\\</script\\> \\[a\\]\\(j:b\\) \\*b\\* \\&lt; \\# ␛\\]52;c;A␇"
    db = tmp_path / "s.sqlite"
    with SessionStore.open(db) as store:
        titled = store.create_session("model`x", None, title=hostile)
        untitled = store.create_session("model", None)
        for sid in (titled, untitled):
            store.add_message(sid, 1, "user", hostile)
            store.add_message(sid, 1, "assistant", f"answer {HOSTILE}")
    for sid in (titled, untitled):
        result = CliRunner().invoke(main, ["sessions", "export", sid, "--format", "markdown", "--db", str(db)],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[0] == heading
        assert_clean(result.output)
        assert f"answer {SHOWN}" in result.output  # the message, controls shown
    assert "- model: ``model`x``" in CliRunner().invoke(
        main, ["sessions", "export", titled, "--format", "markdown", "--db", str(db)]).output
    exact = CliRunner().invoke(main, ["sessions", "export", titled, "--format", "json", "--db", str(db)])
    assert json.loads(exact.output)["session"]["title"] == hostile


@pytest.fixture()
def hostile_kb(agent_home: Path, tmp_path: Path) -> str:
    """A knowledge-base document full of terminal escapes (OSC 52 clipboard write, clear screen, C1 CSI)."""
    doc = tmp_path / "Judrox.md"
    doc.write_text("Judrox clipboard \x1b]52;c;b3duZWQ=\x07 and \x1b[2J cleared \x9b31m red\x7f\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["kb", "add", str(doc)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return "What is the capital of Judrox?"  # the demo model answers it with SEARCH("Judrox")


def test_tool_results_streamed_by_agent_run_carry_no_raw_escape(hostile_kb: str) -> None:
    result = CliRunner().invoke(main, ["run", hostile_kb, "--no-save"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "SEARCH(" in result.output and "clipboard ␛]52;c;b3duZWQ=␇" in result.output  # the island, shown
    assert_clean(result.output)
    as_json = CliRunner().invoke(main, ["run", hostile_kb, "--no-save", "--json"], catch_exceptions=False)
    assert as_json.exit_code == 0, as_json.output
    assert_clean(as_json.output.replace("\n", ""))
    payload = json.loads(as_json.output)
    assert "clipboard \x1b]52;c;b3duZWQ=\x07" in payload["response"] and "\x9b31m" in payload["response"]


def test_tool_results_streamed_by_the_repl_carry_no_raw_escape(hostile_kb: str) -> None:
    session = ChatSession(load_model(str(demo_model_dir()), device="cpu"), default_registry(), DecodeConfig(),
                          confirm=lambda record: False)
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text(f"{hostile_kb}\r/exit\r")
        Repl(session, input=pipe, output=DummyOutput(), out=out, history=InMemoryHistory()).run()
    text = out.getvalue()
    assert "clipboard ␛]52;c;b3duZWQ=␇" in text
    assert_clean(text)
    assert "\x1b]52" in session.last_result.response  # what is kept is exact


def test_every_stored_field_of_a_crafted_session_is_shown_filtered(tmp_path: Path) -> None:
    """A session file is data from anywhere: the decoding strategy and roles drawn in headers and
    labels go through the same filter as the messages."""
    db = tmp_path / "s.sqlite"
    with SessionStore.open(db) as store:
        sid = store.create_session("model", None, title="t")
        store.add_message(sid, 1, "user", "question")
        store.record_turn(sid, 1, config={"strategy": "tree\x1b]52;c;AAAA\x07", "seed": 1}, tool_calls=[],
                          candidates=[], timings={"total": 0.1}, token_counts={"new_tokens": 1})
    with sqlite3.connect(db) as raw:  # written by another tool: any role
        raw.execute("UPDATE messages SET role = 'user\x1b[2J' WHERE role = 'user'")
    for command in (["sessions", "show", sid], ["replay", sid]):
        result = CliRunner().invoke(main, [*command, "--db", str(db)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert_clean(result.output)
        assert "tree␛]52;c;AAAA␇" in result.output and "user␛[2J" in result.output


def test_markdown_tool_call_lines_keep_backticks_and_html_inside_their_code_spans(tmp_path: Path) -> None:
    """A call argument or result with backticks cannot close its code span (raw HTML would follow),
    and a newline in a result does not break the list item."""
    db = tmp_path / "s.sqlite"
    query = "`<img src=x onerror=alert(1)>`"
    with SessionStore.open(db) as store:
        sid = store.create_session("model", None)
        store.add_message(sid, 1, "user", "q")
        store.add_message(sid, 1, "assistant", "a")
        store.record_turn(sid, 1, config={"strategy": "greedy", "seed": 0},
                          tool_calls=[{"tool": "search", "args": {"query": query}, "result": "one\n`two`<b>",
                                       "error": None, "seconds": 0.01, "pure": True, "speculative": False,
                                       "call_text": f'SEARCH("{query}")', "island_text": "\n=> one\\n`two`<b>\n"}],
                          candidates=[], timings={}, token_counts={})
    out = CliRunner().invoke(main, ["sessions", "export", sid, "--format", "markdown", "--db", str(db)]).output
    line = next(row for row in out.splitlines() if row.startswith("- ") and "search(" in row)
    assert line.startswith('- ``search(query="`<img src=x onerror=alert(1)>`")`` → ``one `two`<b>`` (')


def test_the_live_search_line_shows_model_text_as_text() -> None:
    from rich.console import Console

    from agent.render_progress import progress_line

    progress = SearchProgress(strategy="tree", stage="searching", forward_passes=3, budget=64, candidates=1,
                              best_score=-0.5, best_text="[/x] [bold]hi\x1b[2J", best_is_complete=True, seconds=0.2)
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    console.print(progress_line(progress, 120))
    shown = console.file.getvalue()
    assert "best so far: [/x] [bold]hi␛[2J" in shown and "\x1b" not in shown
