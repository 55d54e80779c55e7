"""Tool safety: timeouts, raising tools, huge results, islands that look like calls, confirmation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.grammar.constraint import make_constraint
from agent.grammar.protocol import parse_response
from agent.tooling.registry import ToolRegistry, default_registry
from agent.tooling.runner import ToolRunner
from agent.tooling.spec import tool
from constraint_script import Script

calls: list[str] = []


# 1.5 s, not less: 10% of it (the margin below) must cover forking and killing the worker on a busy machine
@tool(timeout=1.5)
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "awake"


@tool
def boom(why: str) -> str:
    """Always fails."""
    raise RuntimeError(f"kaboom: {why}")


@tool
def huge(n: int) -> str:
    """A very long result."""
    return "y" * n


@tool(in_process=True)  # records its calls in this process's memory
def echo(text: str) -> str:
    """Return the text as the result."""
    calls.append(text)
    return text


@tool(pure=False, in_process=True)  # records its calls in this process's memory
def launch(target: str) -> str:
    """Has a side effect."""
    calls.append("launched " + target)
    return "launched"


def registry() -> ToolRegistry:
    reg = ToolRegistry()
    for f in (slow, boom, huge, echo, launch):
        reg.register(f)
    return reg


@pytest.fixture(autouse=True)
def fresh_calls():
    calls.clear()


@pytest.fixture(scope="module")
def prompt(tiny_lm) -> list[int]:
    return tiny_lm.tokenizer.encode("<|user|>\nhello\n<|assistant|>\n")


def run_script(lm, prompt, text: str, **kwargs):
    constraint = make_constraint(lm, kwargs.pop("reg", None) or registry(), **kwargs)
    result = decode(lm, prompt, DecodeConfig(max_new_tokens=70), constraint=Script(constraint, text))
    parse_response(result.text, constraint.grammar)
    return constraint, result


def test_a_hanging_tool_gives_an_error_island_within_1_1x_its_timeout(tiny_lm, prompt) -> None:
    runner = ToolRunner(registry())
    started = time.perf_counter()
    record = runner.run("slow", {"seconds": 30.0})
    elapsed = time.perf_counter() - started
    assert elapsed <= 1.5 * 1.1
    assert record.error == "slow timed out after 1.5 s"
    assert record.island_text == "\n=> error: slow timed out after 1.5 s\n"
    # inside a response: generation goes on after the error island
    started = time.perf_counter()
    constraint, result = run_script(tiny_lm, prompt, 'CALL(slow, seconds=9) then')
    assert time.perf_counter() - started < 9
    assert result.text.startswith('CALL(slow, seconds=9)\n=> error: slow timed out after 1.5 s\n then')
    assert result.tool_calls[0].error is not None


def test_a_fast_tool_is_not_cut_by_the_timeout() -> None:
    record = ToolRunner(registry()).run("slow", {"seconds": 0.01})
    assert (record.result, record.error) == ("awake", None)


def test_a_raising_tool_gives_an_error_island_and_generation_goes_on(tiny_lm, prompt) -> None:
    constraint, result = run_script(tiny_lm, prompt, 'CALL(boom, why="test") after')
    assert result.text.startswith('CALL(boom, why="test")\n=> error: RuntimeError: kaboom: test\n after')
    record = result.tool_calls[0]
    assert record.result is None and record.error == "RuntimeError: kaboom: test"


def test_a_huge_result_is_cut_with_a_marker(tiny_lm, prompt) -> None:
    constraint, result = run_script(tiny_lm, prompt, "CALL(huge, n=5000000)")
    island = [s for s in parse_response(result.text, constraint.grammar) if s.kind == "island"][0]
    assert island.content == "y" * 1000 + " ...[truncated]"
    shorter = make_constraint(tiny_lm, registry(), result_limit=50)
    out = decode(tiny_lm, prompt, DecodeConfig(max_new_tokens=60), constraint=Script(shorter, "CALL(huge, n=80)"))
    assert "\n=> " + "y" * 50 + " ...[truncated]\n" in out.text


def test_an_island_containing_a_call_triggers_nothing(tiny_lm, prompt) -> None:
    payload = 'SEARCH(\\"x\\") LOAD(1) CALL(echo, text=\\"again\\")'
    constraint, result = run_script(tiny_lm, prompt, f'CALL(echo, text="{payload}")')
    assert calls == ['SEARCH("x") LOAD(1) CALL(echo, text="again")']  # the tool ran once
    assert len(result.tool_calls) == 1
    segments = parse_response(result.text, constraint.grammar)
    assert [s.kind for s in segments][:2] == ["call", "island"]
    assert segments[1].content == 'SEARCH("x") LOAD(1) CALL(echo, text="again")'


def test_a_side_effect_tool_never_runs_without_confirmation(tiny_lm, prompt, agent_home: Path) -> None:
    # no confirm callback (non-interactive, no --yes): refused
    constraint, result = run_script(tiny_lm, prompt, 'CALL(launch, target="moon")')
    assert calls == []
    assert "launch has side effects and was not run" in result.text and "--yes" in result.text
    # the user says no
    asked = []
    constraint, result = run_script(tiny_lm, prompt, 'CALL(launch, target="moon")',
                                    confirm=lambda rec: asked.append(rec) or False)
    assert calls == [] and [(r.tool, r.args) for r in asked] == [("launch", {"target": "moon"})]
    assert "the user declined" in result.text
    # the user says yes
    constraint, result = run_script(tiny_lm, prompt, 'CALL(launch, target="moon")', confirm=lambda rec: True)
    assert calls == ["launched moon"]
    assert '\n=> launched\n' in result.text
    # the built-in note tool writes nothing without confirmation
    constraint, result = run_script(tiny_lm, prompt, 'CALL(note, text="remember")', reg=default_registry())
    assert not (agent_home / "notes.txt").exists()
    constraint, result = run_script(tiny_lm, prompt, 'CALL(note, text="remember")', reg=default_registry(),
                                    confirm=lambda rec: True)
    assert (agent_home / "notes.txt").read_text() == "remember\n"


def test_deferred_side_effects_wait_for_the_chosen_branch(tiny_lm, prompt) -> None:
    constraint = make_constraint(tiny_lm, registry(), confirm=lambda rec: True, defer_side_effects=True)
    script = Script(constraint, 'CALL(launch, target="mars")')
    result = decode(tiny_lm, prompt, DecodeConfig(max_new_tokens=60), constraint=script)
    assert calls == []  # a speculative branch never runs it
    assert result.finish_reason == "grammar" and constraint.is_finished()
    pending = constraint.pending_call
    assert pending is not None and (pending.tool, pending.args) == ("launch", {"target": "mars"})
    assert result.tool_calls[0].result is None and result.tool_calls[0].speculative
    branch = constraint.fork()
    step = constraint.run_pending()  # the chosen path
    assert calls == ["launched mars"]
    assert tiny_lm.tokenizer.decode(step.forced_token_ids) == "\n=> launched\n" and step.forced_is_island
    assert step.tool_call is not None and step.tool_call.result == "launched"
    assert step.tool_call is result.tool_calls[0] and not step.tool_call.speculative  # filled in place
    assert constraint.pending_call is None and not constraint.is_finished()
    assert branch.pending_call is not None  # other branches are untouched
    assert branch.pending_call.record.result is None
    # pure tools run speculatively, and once per arguments thanks to the cache
    calls.clear()
    constraint = make_constraint(tiny_lm, registry(), defer_side_effects=True)
    first = constraint.fork()
    second = constraint.fork()
    for branch in (first, second):
        decode(tiny_lm, prompt, DecodeConfig(max_new_tokens=60), constraint=Script(branch, 'CALL(echo, text="hi")'))
    assert calls == ["hi"]
    assert first.tool_calls[0].speculative and first.tool_calls[0].result == "hi"


def test_bad_arguments_and_unknown_tools_are_error_results() -> None:
    runner = ToolRunner(registry())
    assert "unknown tool 'nope'" in runner.run("nope", {}).error
    assert "missing required argument 'why'" in runner.run("boom", {}).error
    assert "has no argument 'x'" in runner.run("echo", {"text": "a", "x": 1}).error
    assert "expected str" in runner.run("echo", {"text": 3}).error
