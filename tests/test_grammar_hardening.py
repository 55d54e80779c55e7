"""Hostile `--grammar` files: `agent grammar check` and `agent run --grammar` agree, fail fast with the
file and place named, and never end in a traceback.

The audit's cases (issue 18, item 13): a file that is not UTF-8, `start: start` (no text can ever
complete it), `"a"{1000000}`, 50,000 alternatives (check ran over 300 s), and an unterminated regex
on line 3 of a 3-line grammar reported as `5:1: error: lexer error`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.grammar.checking import GRAMMAR_SIZE_LIMIT, check_grammar, read_grammar_file
from agent.grammar.errors import GrammarError

ALTERNATIVES = "start: " + " | ".join(f'"w{i}"' for i in range(50_000)) + "\n"

# grammar -> what the error says (each is refused by `grammar check` and by the run)
HOSTILE = {
    "self.lark": ("start: start\n", "no complete text"),
    "million.lark": ('start: "a"{1000000}\n', "gives up"),
    "endless.lark": ('start: "x" start\n', "gives up"),
    "alternatives.lark": (ALTERNATIVES, "too large"),
    "wide.lark": ("start: " + " | ".join(f'"w{i}"' for i in range(3000)) + "\n", "gives up"),
}


def invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_grammar_check_and_the_run_refuse_the_same_hostile_grammars(tmp_path: Path, tiny_model_dir: Path,
                                                                     name: str) -> None:
    text, says = HOSTILE[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    code, out = invoke(["grammar", "check", str(path)])
    seconds = time.perf_counter() - started
    assert code == 1 and f"{path}:" in out and "error:" in out and says in out, out
    assert seconds < 10, f"grammar check took {seconds:.1f} s"  # measured: 0.2 s for 50,000 alternatives
    code, out = invoke(["run", "hi", "--model", str(tiny_model_dir), "--grammar", str(path), "--no-save"])
    assert code != 0 and str(path) in out and says in out, out


def test_what_grammar_check_accepts_the_run_decodes(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "hundred.lark"
    path.write_text('start: "a"~100\n', encoding="utf-8")
    code, out = invoke(["grammar", "check", str(path)])
    assert code == 0 and out.strip() == f"{path}: ok"
    code, out = invoke(["run", "hi", "--model", str(tiny_model_dir), "--grammar", str(path), "--no-save",
                        "--max-new-tokens", "120"])
    assert code == 0 and out.strip() == "a" * 100, out


def test_an_engine_error_deep_in_a_run_is_a_clear_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The check walks a few dozen bytes; a grammar that only blows up later (a choice of 3,000
    words after 60 letters) passes it, and the run then stops with the engine's reason."""
    path = tmp_path / "late.lark"
    path.write_text("start: /[a-z]{60}/ word\nword: " + " | ".join(f'"w{i}"' for i in range(3000)) + "\n",
                    encoding="utf-8")
    assert check_grammar(path.read_text()) == []
    code, out = invoke(["run", "hi", "--model", str(tiny_model_dir), "--grammar", str(path), "--no-save",
                        "--max-new-tokens", "120"])
    assert code == 1 and "grammar" in out and "items" in out, out


def test_a_grammar_file_that_is_not_utf8_is_named_with_the_place_of_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.lark"
    path.write_bytes(b'start: "a"\n// caf\xe9\n')
    with pytest.raises(GrammarError, match=r"latin1\.lark is not UTF-8 text: byte 0xe9 at line 2, column 7"):
        read_grammar_file(path)
    code, out = invoke(["grammar", "check", str(path)])
    assert code == 1 and str(path) in out and "utf-8" in out.lower(), out
    with pytest.raises(GrammarError, match="cannot read grammar .*missing.lark"):
        read_grammar_file(tmp_path / "missing.lark")


@pytest.mark.parametrize(("text", "line", "column", "says"), [
    ('start: a\na: "x"\nb: /y\n', 3, 4, "regular expression"),      # never closed: the engine said 5:1
    ('start: a\na: "x"\nb: /y', 3, 4, "regular expression"),
    ('start: a\na: "x"\nb: "y" ^\n', 3, 8, "lexer error"),
    ('start: a\na: "x"\nb: "y\n', 3, 6, "lexer error"),
    ("start: a // see /x\na: /[a-z]+/\nb: /y", 3, 4, "regular expression"),  # a `/` in a comment is no regex
    ('start: a\na: "/"\nb: /y\n', 3, 4, "regular expression"),      # nor one in a string
    ("start: b\n\nb: undefined_rule\n", 3, 4, "undefined_rule"),
])
def test_errors_are_reported_where_they_are(text: str, line: int, column: int, says: str) -> None:
    [issue] = check_grammar(text)
    assert (issue.line, issue.column) == (line, column), issue
    assert says in issue.message and str(issue).startswith(f"{line}:{column}: error: ")


def test_the_size_limit_is_the_engines_own_count_and_named() -> None:
    small = "start: " + " | ".join(f'"w{i}"' for i in range(1500)) + "\n"
    assert check_grammar(small) == []
    [issue] = check_grammar(ALTERNATIVES)
    assert f"{GRAMMAR_SIZE_LIMIT:,}" in issue.message and "too large" in issue.message


def test_run_with_a_grammar_file_that_is_not_utf8(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "latin1.lark"
    path.write_bytes(b'start: "a"\n// caf\xe9\n')
    code, out = invoke(["run", "hi", "--model", str(tiny_model_dir), "--grammar", str(path), "--no-save"])
    assert code == 1 and "latin1.lark is not UTF-8 text: byte 0xe9 at line 2, column 7" in out
    assert "Traceback" not in out
