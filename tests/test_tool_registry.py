"""The @tool decorator, ToolSpec signatures, and the registry (files, entry points, built-ins)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Literal

import pytest

from agent.grammar.system_prompt import build_system_prompt, worked_examples
from agent.tooling.registry import ToolRegistry, build_registry, default_registry
from agent.tooling.spec import ToolError, make_spec, spec_of, tool


def test_decorator_builds_a_typed_signature_and_keeps_the_function_callable() -> None:
    @tool(timeout=3.0)
    def weather(city: str, unit: Literal["C", "F"] = "C", days: list[int] = [], hot: bool = False,  # noqa: B006 - the signature test reads this default
                scale: float = 1.5) -> str:
        """Current weather for a city.

        More text that the model never sees.
        """
        return f"{city} {unit}"

    spec = spec_of(weather)
    assert spec is not None
    assert spec.name == "weather"
    assert spec.description == "Current weather for a city."
    assert spec.pure is True and spec.timeout == 3.0
    assert spec.call_signature == ('CALL(weather, city: str, unit: Literal["C", "F"] = "C", days: list[int] = [], '
                                   'hot: bool = false, scale: float = 1.5)')
    assert [p.required for p in spec.params] == [True, False, False, False, False]
    assert weather("Oslo") == "Oslo C"  # still a plain function


def test_builtin_registry_order_signatures_and_exact_descriptions() -> None:
    reg = default_registry()
    assert reg.names() == ["search", "load", "calc", "note"]
    assert [s.call_signature for s in reg] == ["SEARCH(query: str)", "LOAD(id: int)", "CALL(calc, expr: str)",
                                             "CALL(note, text: str)"]
    descriptions = {s.name: s.description for s in reg}
    assert descriptions == {
        "search": "Search the knowledge base; returns the best matches as [id] title: text.",
        "load": "Return the whole document with this id.",
        "calc": "Evaluate an arithmetic expression (+ - * / ** % and parentheses).",
        "note": "Append a line of text to the notes file.",
    }
    assert [s.pure for s in reg] == [True, True, True, False]


def test_specs_feed_the_system_prompt() -> None:
    prompt = build_system_prompt(list(default_registry()))
    assert "SEARCH(query: str) - Search the knowledge base" in prompt
    assert "CALL(note, text: str) - Append a line of text to the notes file. (has side effects; asks first)" in prompt


@pytest.mark.parametrize("source, message", [
    ("def f(x):\n    '''Doc.'''\n", "missing type hint"),
    ("def f(x: dict):\n    '''Doc.'''\n", "unsupported argument type"),
    ("def f(*xs: int):\n    '''Doc.'''\n", "*args/**kwargs"),
    ("def f(x: int):\n    pass\n", "needs a docstring"),
    ("def f(x: int | None = None):\n    '''Doc.'''\n", "optional/union"),
    ("def f(x: list[list[int]]):\n    '''Doc.'''\n", "nested lists"),
    ("def f(x: int = 'a'):\n    '''Doc.'''\n", "does not match the type"),
])
def test_bad_tool_definitions_are_refused_with_the_argument_named(source: str, message: str) -> None:
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - defining test functions
    with pytest.raises(ToolError) as info:
        make_spec(namespace["f"])
    assert message in str(info.value)
    assert "'f'" in str(info.value)


def test_bad_tool_names_are_refused() -> None:
    def f(x: int) -> int:
        """Doc."""
        return x

    for name in ("Bad", "with-dash", "9lives"):
        with pytest.raises(ToolError):
            make_spec(f, name=name)


def test_load_file_registers_its_tools_in_order(tmp_path: Path) -> None:
    file = tmp_path / "my_tools.py"
    file.write_text(textwrap.dedent('''
        from typing import Literal
        from agent.tooling.spec import tool
        from agent.tools.calc import calc  # imported, not defined here: must not register twice

        @tool(name="shout", pure=True, timeout=2)
        def make_loud(text: str, times: int = 1) -> str:
            """Upper-case a text."""
            return text.upper() * times

        @tool(pure=False)
        def send(to: Literal["alice", "bob"], body: str) -> str:
            """Send a message."""
            return "sent"
    '''))
    reg = default_registry()
    found = reg.load_file(file)
    assert [s.name for s in found] == ["shout", "send"]
    assert reg.names() == ["search", "load", "calc", "note", "shout", "send"]
    assert reg.get("shout").call_signature == "CALL(shout, text: str, times: int = 1)"
    assert reg.get("send").pure is False
    assert reg.get("shout").source == str(file)
    assert reg.get("shout").func("a", 2) == "AA"


def test_load_file_errors_name_the_file(tmp_path: Path) -> None:
    reg = ToolRegistry()
    with pytest.raises(ToolError, match="does not exist"):
        reg.load_file(tmp_path / "nope.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ToolError, match="defines no @tool functions"):
        reg.load_file(empty)
    broken = tmp_path / "broken.py"
    broken.write_text("def oops(:\n")
    with pytest.raises(ToolError, match="broken.py"):
        reg.load_file(broken)
    bad_tool = tmp_path / "bad_tool.py"
    bad_tool.write_text("from agent.tooling import tool\n@tool\ndef f(x):\n    '''Doc.'''\n")
    with pytest.raises(ToolError, match="bad_tool.py.*missing type hint"):
        reg.load_file(bad_tool)


def test_duplicate_names_are_an_error(tmp_path: Path) -> None:
    file = tmp_path / "dup.py"
    file.write_text("from agent.tooling import tool\n@tool\ndef calc(expr: str) -> str:\n    '''Mine.'''\n"
                    "    return expr\n")
    with pytest.raises(ToolError, match="'calc' is already registered"):
        build_registry([str(file)], entry_points=False)


def test_entry_point_group_registers_installed_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fancy_agent_tools.py").write_text(textwrap.dedent('''
        from agent.tooling.spec import tool

        @tool
        def reverse(text: str) -> str:
            """Reverse a text."""
            return text[::-1]
    '''))
    dist = tmp_path / "fancy_agent_tools-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-agent-tools\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[agent.tools]\nfancy = fancy_agent_tools\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        reg = build_registry()
        assert reg.names()[-1] == "reverse"
        assert reg.get("reverse").source.startswith("entry point fancy")
        assert reg.get("reverse").func("abc") == "cba"
    finally:
        sys.modules.pop("fancy_agent_tools", None)


def test_a_tool_without_a_known_example_is_shown_values_taken_from_a_question() -> None:
    def triangle_area(base: int, height: int, unit: str) -> str:
        """Area of a triangle."""
        return str(base * height / 2)

    spec = make_spec(triangle_area)
    examples = worked_examples([spec])
    shown = "\n".join(examples)
    # no example of its own whose placeholder values a small model would copy into its calls ...
    assert "triangle_area" not in shown and '"text"' not in shown and "=1" not in shown
    # ... but exchanges with invented tools whose values come from their questions
    assert 'Question: How much is 250 euros in Japanese yen?\nAnswer: CALL(convert_currency, amount=250' in shown
    assert len(examples) == 2
    # the demo model's tools keep their own examples
    own = worked_examples(list(default_registry()))
    assert [e.split("\n")[1] for e in own] == [
        'Answer: SEARCH("capital of France")', "Answer: LOAD(3)", 'Answer: CALL(calc, expr="12 * 7")',
        'Answer: CALL(note, text="buy milk")']
