"""Saved prompt templates, as `llm` users keep them: `agent templates save/list/show/remove` and
`agent run --template NAME -p VAR VALUE`, with PROMPT or stdin as $input, end to end on the demo model."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent.cli import main


def _agent(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.output


def test_a_saved_template_is_filled_in_and_answered(agent_home: Path) -> None:
    code, out = _agent("templates", "save", "mul", "What is $a * $b?", "-s", "Answer briefly.")
    assert code == 0 and "saved template mul ($a, $b)" in out
    assert (agent_home / "templates" / "mul.json").exists()
    assert _agent("templates", "list")[1].splitlines() == ["mul\t$a $b\tWhat is $a * $b?"]
    assert "system: Answer briefly." in _agent("templates", "show", "mul")[1]

    code, out = _agent("run", "--template", "mul", "-p", "a", "12", "-p", "b", "12", "--json")
    assert code == 0, out
    answer = json.loads(out.strip().splitlines()[-1])
    assert "144" in answer["response"] and answer["tool_calls"][0]["args"] == {"expr": "12 * 12"}
    exported = json.loads(_agent("sessions", "export", answer["session_id"], "--format", "json")[1])
    messages = {m["role"]: m["text"] for m in exported["messages"]}
    assert messages["user"] == "What is 12 * 12?"
    assert messages["system"].endswith("\nAnswer briefly.")  # added to the tool instructions, not replacing them


def test_stdin_is_the_input_variable(agent_home: Path) -> None:
    _agent("templates", "save", "ask", "Question: $input")
    code, out = _agent("run", "--template", "ask", "--json", stdin="What is 7 * 6?")
    assert code == 0, out
    assert "42" in json.loads(out.strip().splitlines()[-1])["response"]


def test_template_mistakes_are_clear_errors(agent_home: Path) -> None:
    _agent("templates", "save", "mul", "What is $a * $b?")
    code, out = _agent("run", "--template", "mul", "-p", "a", "3")
    assert code == 1 and "template 'mul' needs a value for $b" in out
    code, out = _agent("run", "--template", "mul", "-p", "a", "3", "-p", "b", "4", "-p", "c", "5")
    assert code == 1 and "template 'mul' has no variable $c" in out
    code, out = _agent("run", "--template", "nope")
    assert code == 1 and "no template 'nope'; templates: mul" in out
    code, out = _agent("run", "hello", "-p", "a", "3")
    assert code == 2 and "use it with --template NAME" in out
    code, out = _agent("templates", "save", "mul", "other")
    assert code == 1 and "pass --replace" in out
    assert _agent("templates", "show", "mul")[1].startswith("prompt: What is $a * $b?")  # untouched
    code, out = _agent("templates", "save", "price", "It costs $5")
    assert code == 1 and "write $$ for a dollar sign" in out
    code, out = _agent("templates", "save", "../escape", "x")
    assert code == 1 and "is not a template name" in out
    assert _agent("templates", "remove", "mul")[0] == 0
    assert "no templates saved yet" in _agent("templates", "list")[1]
