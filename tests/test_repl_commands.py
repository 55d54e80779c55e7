"""The REPL's conversation commands, each driven end to end through prompt_toolkit's pipe input:
/undo, /retry, /copy, /save, /system, /tokens, /show, Markdown answers and the line after an answer."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from agent.config import DecodeConfig
from agent.confirm import ask_confirmation
from agent.demo_model import demo_model_dir
from agent.model.runtime import LoadedModel, load_model
from agent.repl import Repl
from agent.sessions.store import SessionStore
from agent.tooling.registry import default_registry
from agent.turn import ChatSession

# The grammar makes the tiny model write exactly this answer (whatever its random weights prefer).
LIST_ANSWER = "# Groceries\n\n- **milk**\n- eggs"
LIST_GRAMMAR = 'start: "# Groceries\\n\\n- **milk**\\n- eggs"\n'


def drive(session: ChatSession, keys: str, *, markdown: bool = False) -> str:
    """Type `keys` into a REPL on `session` (ending with /exit); returns what it printed."""
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        Repl(session, input=pipe, output=DummyOutput(), out=out, history=InMemoryHistory(), markdown=markdown).run()
    return out.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore.open(tmp_path / "sessions.sqlite")


def reopened(store: SessionStore) -> SessionStore:
    """The database as another process sees it (the REPL closed its store on exit)."""
    return SessionStore.open(store.path)


def test_undo_takes_the_turn_back_and_the_store_keeps_it_marked(tiny_lm: LoadedModel, store: SessionStore) -> None:
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=6), store=store)
    text = drive(session, "first question\rsecond question\r/undo\r/exit\r")
    assert "undone: 'second question'" in text and "marked undone" in text and "1 turn left" in text
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["first question"]
    db = reopened(store)
    stored = db.messages(session.session_id)
    second = [m for m in stored if m["turn"] == 2]
    # nothing deleted: the question and its answer are there, marked with when they were undone
    assert [m["role"] for m in second] == ["user", "assistant"] and second[0]["text"] == "second question"
    assert all(m["undone"] for m in second) and not any(m["undone"] for m in stored if m["turn"] == 1)
    assert len(db.turn_records(session.session_id)) == 2  # the undone answer's record is kept too
    # a resume continues from what the conversation was after the undo
    assert [m["content"] for m in db.history(session.session_id) if m["role"] == "user"] == ["first question"]
    resumed = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=6), store=db, session_id=session.session_id)
    assert resumed.turn_index == 1


def test_undo_with_nothing_to_undo_says_so(tiny_lm: LoadedModel) -> None:
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=4))
    text = drive(session, "/undo\r/exit\r")
    assert "/undo: there is no turn to undo" in text


def test_undo_refuses_when_another_process_wrote_the_last_turn(tiny_lm: LoadedModel, store: SessionStore) -> None:
    mine = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=4), store=store)
    mine.ask("my question")
    other = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=4), store=reopened(store),
                        session_id=mine.session_id)
    other.ask("their question")
    text = drive(mine, "/undo\r/exit\r")
    assert "another process wrote to it): nothing undone" in text
    assert mine.turn_index == 1
    assert not any(m["undone"] for m in reopened(store).messages(mine.session_id))


def test_retry_of_a_greedy_answer_samples_with_the_next_seed(tiny_lm: LoadedModel, store: SessionStore) -> None:
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=8), store=store)
    text = drive(session, "tell me something\r/retry\r/exit\r")
    assert "with seed 1, sampled at temperature 1 (greedy gives the same answer" in text
    assert session.config.strategy == "greedy" and session.config.seed == 1  # the seed moves on, greedy stays
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["tell me something"]
    db = reopened(store)
    records = db.turn_records(session.session_id)
    assert [(r["turn"], r["strategy"], r["seed"]) for r in records] == [(1, "greedy", 0), (2, "sample", 1)]
    stored = db.messages(session.session_id)
    assert [(m["turn"], m["role"], bool(m["undone"])) for m in stored if m["role"] != "system"] == [
        (1, "user", True), (1, "assistant", True), (2, "user", False), (2, "assistant", False)]
    assert stored[-1]["text"] == session.messages[-1]["content"]


def test_retry_of_a_sampled_answer_takes_the_next_seed_each_time(tiny_lm: LoadedModel, store: SessionStore) -> None:
    session = ChatSession(tiny_lm, None, DecodeConfig(strategy="sample", max_new_tokens=12), store=store)
    text = drive(session, "tell me something\r/retry\r/retry\r/exit\r")
    assert "with seed 1;" in text and "with seed 2;" in text
    records = reopened(store).turn_records(session.session_id)
    assert [(r["strategy"], r["seed"]) for r in records] == [("sample", 0), ("sample", 1), ("sample", 2)]
    answers = [m["text"] for m in reopened(store).messages(session.session_id) if m["role"] == "assistant"]
    assert len(set(answers)) > 1  # other seeds, other samples
    assert session.turn_index == 1 and session.messages[-1]["content"] == answers[-1]


def test_copy_without_a_clipboard_says_so_and_ctrl_y_pastes_the_answer(
        tiny_lm: LoadedModel, agent_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a machine with no clipboard program and no display (a server, a container)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=60), user_grammar=LIST_GRAMMAR)
    # /copy, then Ctrl-Y (yank) at the next prompt and Enter: the pasted answer is the next message
    text = drive(session, "make a list\r/copy\r\x19\r/exit\r")
    assert "no system clipboard here (no pbcopy, wl-copy, xclip, xsel or clip.exe for this display)" in text
    copied = agent_home / "copied.md"
    assert f"The answer is in {copied}; Ctrl-Y pastes it at the prompt" in " ".join(text.split())
    assert copied.read_text() == LIST_ANSWER and copied.stat().st_mode & 0o777 == 0o600
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["make a list", LIST_ANSWER]
    assert "\x1b]52" not in text  # OSC 52 only to a terminal


def test_copy_before_any_answer(tiny_lm: LoadedModel) -> None:
    assert "no answer to copy yet" in drive(ChatSession(tiny_lm, None, DecodeConfig()), "/copy\r/exit\r")


def test_save_writes_the_conversation_as_markdown_and_never_overwrites(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=60), user_grammar=LIST_GRAMMAR)
    path = tmp_path / "chat.md"
    text = drive(session, f"make a list\rand another\r/save {path}\r/save {path}\r/exit\r")
    assert f"saved 2 turns to {path}" in text
    assert f"{path} exists: nothing written" in " ".join(text.split())
    saved = path.read_text()
    assert saved.startswith("# make a list\n")
    assert "## 1. Question\n\n> make a list\n\n## 1. Answer\n\n" + LIST_ANSWER in saved
    assert "## 2. Question\n\n> and another\n" in saved and saved.count(LIST_ANSWER) == 2
    assert path.stat().st_mode & 0o777 == 0o600


def test_system_sets_the_text_for_a_new_conversation(tiny_lm: LoadedModel, store: SessionStore) -> None:
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=4), store=store)
    text = drive(session, "/system Answer in French.\rhello\r/system\r/system Be brief.\rhi\r/exit\r")
    assert "system text set\n" in text  # no conversation yet: nothing to start anew
    assert "system text: 'Answer in French.'" in text
    db = reopened(store)
    first, second = sorted(db.list_sessions(), key=lambda row: row["created"])
    assert f"system text set; a new conversation starts; session {first['id']} keeps its 1 turns" in text
    # each stored session keeps the system prompt its turns were answered with
    assert db.history(first["id"])[0] == {"role": "system", "content": "Answer in French."}
    assert db.history(second["id"])[0] == {"role": "system", "content": "Be brief."}
    assert session.session_id == second["id"] and session.turn_index == 1


def test_tokens_lists_each_answer_and_tokenizes_text(tiny_lm: LoadedModel) -> None:
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=5))
    text = drive(session, "hello\rhello again\r/undo\r/tokens\r/tokens the cat sat\r/exit\r")
    rows = [line.split() for line in text.splitlines() if re.match(r"(\d+|all) +\d+ +\d+ +\d+ ", line)]
    assert [row[0] for row in rows] == ["1", "2", "all"]
    assert rows[0][3] == rows[1][3] == "5" and rows[2][3] == "10"  # new tokens, and their sum
    assert rows[1][-1] == "undone"  # spent all the same
    count = len(tiny_lm.tokenizer.encode("the cat sat", add_special_tokens=False))
    assert f"{count} token{'' if count == 1 else 's'}\n" in text
    assert re.search(r"the conversation now fills \d+/\d+ tokens of context", text)


def test_the_line_after_an_answer_has_tokens_speed_and_context(tiny_lm: LoadedModel) -> None:
    text = drive(ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=5)), "hello\r/exit\r")
    assert re.search(r"^5 tokens in \d+\.\d\ds · \d+\.\d tok/s · context \d+/\d+ tokens$", text, re.MULTILINE)


def test_answers_are_drawn_as_markdown_unless_plain(tiny_lm: LoadedModel) -> None:
    config = DecodeConfig(max_new_tokens=60)
    drawn = drive(ChatSession(tiny_lm, None, config, user_grammar=LIST_GRAMMAR), "make a list\r/exit\r", markdown=True)
    assert "Groceries" in drawn and "• milk" in drawn and "• eggs" in drawn
    assert "**milk**" not in drawn and "# Groceries" not in drawn
    plain = drive(ChatSession(tiny_lm, None, config, user_grammar=LIST_GRAMMAR), "make a list\r/exit\r")
    assert LIST_ANSWER in plain


def test_show_prints_the_model(tiny_lm: LoadedModel) -> None:
    text = drive(ChatSession(tiny_lm, None, DecodeConfig()), "/show\r/exit\r")
    config = tiny_lm.model.config
    assert f"context length {config.max_position_embeddings} tokens" in " ".join(text.split())
    assert re.search(rf"layers +{config.num_hidden_layers}\n", text)
    assert re.search(r"tool format +protocol\n", text)
    parameters = sum(p.numel() for p in tiny_lm.model.parameters())
    assert f"({parameters})" in text and "chat template" in text


@pytest.fixture(scope="module")
def demo_lm() -> LoadedModel:
    return load_model(str(demo_model_dir()), device="cpu")


def test_markdown_answers_keep_tool_calls_and_the_confirmation_as_they_are(demo_lm: LoadedModel,
                                                                            agent_home: Path) -> None:
    session = ChatSession(demo_lm, default_registry(), DecodeConfig(), confirm=ask_confirmation)
    text = drive(session, "What is 2*3*4?\rTake a note: buy milk\ry/exit\r", markdown=True)
    # the call keeps its asterisks (not emphasis), the island and the prose each on their line
    assert 'CALL(calc, expr="2*3*4")\n=> 24\n' in text
    # the answer drawn so far stays, the question comes below it, the rest of the answer after it
    assert "CALL(note, text=\"buy milk\nRun note(text='buy milk')? It has side effects.\nyes, running it\n" in text
    assert (agent_home / "notes.txt").read_text().strip().endswith("buy milk")
    assert session.turn_index == 2


def test_the_search_tree_is_stored_with_the_turn_and_drawn_after_a_resume(tiny_lm: LoadedModel,
                                                                           store: SessionStore) -> None:
    config = DecodeConfig(strategy="tree", max_new_tokens=6, budget=24)
    searched = ChatSession(tiny_lm, None, config, store=store)
    result = searched.ask("hello")
    live = {node.id: node for node in result.search.tree.subtree()[1:]}  # the prompt's node is not stored
    stored = reopened(store).search_tree(searched.session_id, 1)
    assert stored is not None and len(stored["nodes"]) == len(live) > 1
    for node in stored["nodes"]:  # every node of the tree, with its parent, tokens, fate and score
        twin = live[node["id"]]
        assert node["parent"] == (twin.parent.id if twin.parent is not result.search.tree else None)
        assert node["tokens"] == twin.tokens and node["status"] == twin.status and node["eos"] == twin.is_eos
        assert node["mean"] == pytest.approx(twin.mean)
    assert stored["best_node"] == result.search.best.node_id

    resumed = ChatSession(tiny_lm, None, config, store=reopened(store), session_id=searched.session_id)
    text = drive(resumed, "/tree\r/tree 1\r/tree 7\r/exit\r")
    assert text.count(f"turn 1: {len(live)} nodes stored") == 2
    assert f"no search tree stored for turn 7 of session {searched.session_id}" in text


class _TreePage(HTMLParser):
    """What a browser's DOM would hold of the page: its node items (id, classes) and call spans. A strict
    parser: unbalanced tags are an error, as they would misplace nodes in a real DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[int, list[str]] = {}
        self.calls = 0
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "li" and "node" in classes:
            self.nodes[int(found["data-node"] or "")] = classes
        if tag == "span" and "call" in classes:
            self.calls += 1
        if tag not in ("meta", "br", "img", "link", "input", "hr"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (self.open[-3:], tag)
        self.open.pop()


def test_the_html_tree_of_a_tree_search_turn_holds_every_node(demo_lm: LoadedModel, store: SessionStore,
                                                              tmp_path: Path) -> None:
    session = ChatSession(demo_lm, default_registry(), DecodeConfig(strategy="tree", budget=48), store=store)
    page = tmp_path / "tree.html"
    text = drive(session, f"What is 12 * 12?\r/tree 1 --html {page}\r/exit\r")
    stored = reopened(store).search_tree(session.session_id, 1)
    assert stored is not None and len(stored["nodes"]) > 10
    assert f"wrote the {len(stored['nodes'])} nodes of turn 1's tree to {page}" in " ".join(text.split())

    parsed = _TreePage()
    parsed.feed(page.read_text(encoding="utf-8"))
    parsed.close()
    assert parsed.open == []  # every element closed
    assert "<script" not in page.read_text(encoding="utf-8")  # a self-contained page with nothing to run
    # the branch calls are kept with their node, chosen branch or not
    calls = [node["call"] for node in stored["nodes"] if node["call"]]
    assert calls and all(call["tool"] == "calc" for call in calls)
    assert any(call["result"] == "144" for call in calls)
    assert parsed.calls == len(calls)
    assert sorted(parsed.nodes) == sorted(node["id"] for node in stored["nodes"])
    assert "best" in parsed.nodes[stored["best_node"]]  # the chosen answer's path is marked


def test_sessions_tree_draws_and_exports_the_stored_tree(tiny_lm: LoadedModel, store: SessionStore, tmp_path: Path,
                                                          agent_home: Path) -> None:
    from click.testing import CliRunner  # the CLI, in this process: the store was written by this test

    from agent.cli import main

    session = ChatSession(tiny_lm, None, DecodeConfig(strategy="tree", max_new_tokens=5, budget=16), store=store)
    session.ask("hello")
    session.set_config(DecodeConfig(max_new_tokens=3))
    session.ask("and greedy")  # turn 2: no tree
    nodes = len(reopened(store).search_tree(session.session_id, 1)["nodes"])
    runner, db = CliRunner(), str(store.path)
    drawn = runner.invoke(main, ["sessions", "tree", session.session_id[:6], "1", "--db", db])
    assert drawn.exit_code == 0 and f"turn 1: {nodes} nodes stored" in drawn.stdout, drawn.output
    page = tmp_path / "t.html"
    written = runner.invoke(main, ["sessions", "tree", session.session_id, "1", "--html", str(page), "--db", db])
    assert written.exit_code == 0 and page.read_text().count('class="node') == nodes, written.output
    again = runner.invoke(main, ["sessions", "tree", session.session_id, "1", "--html", str(page), "--db", db])
    assert again.exit_code == 1 and "exists: nothing written" in again.stderr
    latest = runner.invoke(main, ["sessions", "tree", session.session_id, "--db", db])
    assert latest.exit_code == 1 and "no search tree stored for turn 2" in latest.stderr


class Terminal(io.StringIO):
    """An output that says it is a terminal, as a real one does: rich draws live areas and colours on it."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_answers_are_markdown_by_default_and_the_summary_follows_at_once(tiny_lm: LoadedModel) -> None:
    out = Terminal()
    session = ChatSession(tiny_lm, None, DecodeConfig(max_new_tokens=60), user_grammar=LIST_GRAMMAR)
    with create_pipe_input() as pipe:
        pipe.send_text("make a list\r/exit\r")
        Repl(session, input=pipe, output=DummyOutput(), out=out, history=InMemoryHistory()).run()
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # colours and cursor moves left out
    assert "• milk" in drawn and "**milk**" not in drawn
    # the live area ends its own line: the summary comes on the next one, no blank line between
    assert re.search(r"• eggs *\n26 tokens in", drawn), repr(drawn[-300:])


def test_a_search_shows_a_searching_line_until_its_answer(tiny_lm: LoadedModel) -> None:
    def run(strategy: str) -> str:
        out = Terminal()
        config = DecodeConfig(strategy=strategy, max_new_tokens=60, **({"budget": 80} if strategy == "tree" else {}))
        session = ChatSession(tiny_lm, None, config, user_grammar=LIST_GRAMMAR)
        with create_pipe_input() as pipe:
            pipe.send_text("make a list\r/exit\r")
            Repl(session, input=pipe, output=DummyOutput(), out=out, history=InMemoryHistory(), markdown=False).run()
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())

    searched = run("tree")
    live = re.search(r"tree · pass \d+/80 · \d+ answers?", searched)  # the live line: passes of the budget
    assert live is not None and live.start() < searched.index(LIST_ANSWER)
    streamed = run("greedy")
    assert "searching" not in streamed and "· pass " not in streamed  # greedy streams its answer as it comes
