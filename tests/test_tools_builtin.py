"""The built-in tools (search, load, calc, note), the knowledge base, and their CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.tools import grammar_command_group, kb_command_group, tools_command_group
from agent.tooling.registry import default_registry
from agent.tooling.runner import ToolRunner
from agent.tooling.spec import ToolFailure
from agent.tools import kb
from agent.tools.calc import calc
from agent.tools.load import load
from agent.tools.note import note
from agent.tools.search import search

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


@pytest.fixture()
def kb_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent_home: Path) -> Path:
    """An empty knowledge base seeded from a small docs.jsonl written here."""
    seed = tmp_path / "docs.jsonl"
    docs = [
        {"id": 1, "title": "France", "text": "The capital of France is Paris. " + "Paris is large. " * 30},
        {"id": 2, "title": "Germany", "text": "The capital of Germany is Berlin."},
        {"id": 3, "title": "Spain", "text": "The capital of Spain is Madrid."},
        {"id": 4, "title": "Italy", "text": "The capital of Italy is Rome."},
        {"id": 7, "title": "Bread", "text": "Bread is baked\nfrom flour."},
    ]
    seed.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    monkeypatch.setattr(kb, "shipped_docs_path", lambda: seed)
    path = tmp_path / "kb.sqlite"
    monkeypatch.setenv("AGENT_KB", str(path))
    return path


@pytest.mark.parametrize("expr, expected", [
    ("1234 * 5678", "7006652"),
    ("2 ** 100", "1267650600228229401496703205376"),
    ("7 / 2", "3.5"),
    ("6 / 3", "2"),
    ("1 / 3", "0.3333333333"),
    ("-2 ** 2", "-4"),
    ("(1 + 2) * -3", "-9"),
    ("17 // 5", "3"),
    ("17 % 5", "2"),
    ("0.1 + 0.2", "0.3"),
    ("2.5e3 - 1", "2499"),
    ("2 ** -2", "0.25"),
    ("  3  +  4 ", "7"),
])
def test_calc_evaluates_exactly(expr: str, expected: str) -> None:
    assert calc(expr) == expected


@pytest.mark.parametrize("expr, message", [
    ("1 / 0", "division by zero"),
    ("5 // 0", "division by zero"),
    ("5 % 0", "division by zero"),
    ("0 ** -1", "division by zero"),
    ("2 +", "cannot parse the expression at column"),
    ("__import__('os')", "cannot parse the expression at column 1"),
    ("", "empty expression"),
    ("10 ** 10 ** 10", "result too large"),
    ("(-8) ** 0.5", "not a real number"),
])
def test_calc_errors_are_clear(expr: str, message: str) -> None:
    with pytest.raises(ToolFailure) as info:
        calc(expr)
    assert message in str(info.value)


def test_calc_division_by_zero_island() -> None:
    record = ToolRunner(default_registry()).run("calc", {"expr": "1/0"})
    assert record.error == "division by zero"
    assert record.island_text == "\n=> error: division by zero\n"


def test_search_ranks_top_three_and_formats_hits(kb_file: Path) -> None:
    out = search("capital of France?")
    hits = out.split(" | ")
    assert len(hits) == 3
    assert hits[0].startswith("[1] France: The capital of France is Paris.")
    text = hits[0][len("[1] France: "):]
    assert len(text) == 200  # TEXT cut to 200 characters
    assert all(h.startswith("[") for h in hits)
    assert search("flour!!!") == "[7] Bread: Bread is baked from flour."  # punctuation dropped, one line
    assert search("zebra") == "no results"
    assert search("?!") == "no results"
    assert kb_file.exists()


def test_search_words_are_or_ed(kb_file: Path) -> None:
    # no document has both words; either one may match
    out = search("Berlin Madrid")
    assert {h.split("]")[0] for h in out.split(" | ")} == {"[2", "[3"}


def test_load_returns_the_whole_document(kb_file: Path) -> None:
    assert load(7) == "Bread: Bread is baked\nfrom flour."
    with pytest.raises(ToolFailure, match="no document with id 99"):
        load(99)
    record = ToolRunner(default_registry()).run("load", {"id": 7})
    assert record.island_text == "\n=> Bread: Bread is baked\\nfrom flour.\n"
    assert ToolRunner(default_registry()).run("load", {"id": 99}).island_text == \
        "\n=> error: no document with id 99\n"


def test_add_paths_indexes_text_and_markdown(kb_file: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "guide.md").write_text("# Kettle guide\nDescale the kettle with vinegar.\n")
    (notes / "sub" / "todo.txt").write_text("buy vinegar and flour\n")
    (notes / "image.png").write_bytes(b"\x89PNG")
    added = kb.add_paths([notes])
    assert [d.title for d in added] == ["Kettle guide", "todo"]
    assert added[0].id == 8  # after the seeded ids
    assert search("descale")[:20] == "[8] Kettle guide: # "
    # adding again updates in place, no duplicates
    (notes / "guide.md").write_text("# Kettle guide\nUse citric acid.\n")
    again = kb.add_paths([notes / "guide.md"])
    assert again[0].id == 8
    assert load(8) == "Kettle guide: # Kettle guide\nUse citric acid.\n"
    with pytest.raises(kb.KBError, match="does not exist"):
        kb.add_paths([tmp_path / "missing.md"])
    with pytest.raises(kb.KBError, match="not a text or markdown file"):
        kb.add_paths([notes / "image.png"])


def test_corrupt_knowledge_base_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("AGENT_KB", str(bad))
    with pytest.raises(kb.KBError, match="cannot be opened"):
        search("x")
    record = ToolRunner(default_registry()).run("search", {"query": "x"})
    assert record.error is not None and "bad.sqlite" in record.error


def test_note_appends_a_line(agent_home: Path) -> None:
    assert note("first") == "noted"
    assert note("second\nline") == "noted"
    assert (agent_home / "notes.txt").read_text() == "first\nsecond line\n"


def test_cli_tools_list_kb_and_grammar_check(kb_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(tools_command_group, ["list", "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.output)
    assert [t["call_signature"] for t in listed] == ["SEARCH(query: str)", "LOAD(id: int)",
                                                     "CALL(calc, expr: str)", "CALL(note, text: str)"]
    table = runner.invoke(tools_command_group, ["list"])
    assert "CALL(calc, expr: str)" in table.output and "no (asks)" in table.output

    doc = tmp_path / "kettle.md"
    doc.write_text("# Kettles\nA kettle boils water.\n")
    added = runner.invoke(kb_command_group, ["add", str(doc)])
    assert added.exit_code == 0 and "[8] Kettles" in added.output
    found = runner.invoke(kb_command_group, ["search", "boils"])
    assert found.output.startswith("[8] Kettles: # Kettles A kettle boils water.")
    missing = runner.invoke(kb_command_group, ["add", str(tmp_path / "nope.txt")])
    assert missing.exit_code != 0 and "does not exist" in missing.output

    ok = runner.invoke(grammar_command_group, ["check", str(GRAMMARS / "json.lark")])
    assert ok.exit_code == 0 and "ok" in ok.output
    bad = tmp_path / "bad.lark"
    bad.write_text('start: "a" item\nitem: ( "b"\n')
    res = runner.invoke(grammar_command_group, ["check", str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:2:" in res.output  # line and column of the error


def test_every_command_help_has_an_example() -> None:
    runner = CliRunner()
    for group, subs in ((tools_command_group, ["list"]), (kb_command_group, ["add", "search"]),
                        (grammar_command_group, ["check"])):
        assert "Example" in runner.invoke(group, ["--help"]).output
        for sub in subs:
            assert "Example" in runner.invoke(group, [sub, "--help"]).output
