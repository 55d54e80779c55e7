"""--tool-choice (OpenAI's meaning) is enforced by the grammar, for every strategy: `required` opens the
response with a call, a tool's name with a call of that tool, `none` makes no call possible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import STRATEGIES, DecodeConfig
from agent.grammar.protocol import ProtocolError, build_turn_grammar
from agent.model.runtime import LoadedModel
from agent.tooling.registry import default_registry
from agent.turn import ChatSession

OPENINGS = ("SEARCH(", "LOAD(", "CALL(")


def _ask(lm: LoadedModel, strategy: str, tool_choice: str, seed: int = 0) -> tuple[str, list[str]]:
    config = DecodeConfig(strategy=strategy, tool_choice=tool_choice, max_new_tokens=24, budget=48, seed=seed,
                          beam_width=2, num_samples=2, grad_steps=1, top_candidates=2)
    session = ChatSession(lm, default_registry(), config, confirm=lambda call: False)
    result = session.ask("What is 12 * 7?")
    return result.response, [call.tool for call in result.tool_calls]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_required_opens_every_response_with_a_call(tiny_lm: LoadedModel, strategy: str) -> None:
    for seed in (0, 1):
        response, tools = _ask(tiny_lm, strategy, "required", seed)
        assert response.startswith(OPENINGS), response
        assert tools and tools[0] in default_registry().names()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_named_tool_is_the_first_call(tiny_lm: LoadedModel, strategy: str) -> None:
    response, tools = _ask(tiny_lm, strategy, "calc")
    assert response.startswith('CALL(calc, expr="'), response
    assert tools[0] == "calc"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_none_makes_no_call_and_writes_no_call_opening(tiny_lm: LoadedModel, strategy: str) -> None:
    for seed in (0, 1, 2):
        response, tools = _ask(tiny_lm, strategy, "none", seed)
        assert tools == []
        assert not any(opening in response for opening in OPENINGS), response


def test_the_grammar_refuses_text_before_a_required_call_and_calls_under_none() -> None:
    registry = default_registry()
    answer = 'CALL(calc, expr="1+2")\n=> 3\nThe answer is 3.'
    assert [s.kind for s in build_turn_grammar(registry, "required").parse(answer)] == ["call", "island", "text"]
    with pytest.raises(ProtocolError):
        build_turn_grammar(registry, "required").parse("Let me see. " + answer)
    with pytest.raises(ProtocolError):
        build_turn_grammar(registry, "search").parse(answer)  # a call, but of another tool
    with pytest.raises(ProtocolError):
        build_turn_grammar(registry, "none").parse(answer)
    assert [s.kind for s in build_turn_grammar(registry, "none").parse("It is 3.")] == ["text"]
    with pytest.raises(ValueError, match="'nosuch'"):
        build_turn_grammar(registry, "nosuch")


def test_set_tool_choice_checks_the_tools(tiny_lm: LoadedModel) -> None:
    session = ChatSession(tiny_lm, default_registry(), DecodeConfig())
    session.set_config(session.config.set_from_text("tool_choice", "note"))
    assert session.config.tool_choice == "note"
    with pytest.raises(ValueError, match="not a registered tool"):
        session.set_config(session.config.set_from_text("tool_choice", "weather"))
    bare = ChatSession(tiny_lm, None, DecodeConfig())
    with pytest.raises(ValueError, match="needs tools"):
        bare.set_config(bare.config.replace(tool_choice="required"))


def _agent(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_run_with_a_named_tool_calls_it_on_the_demo_model(tmp_path: Path) -> None:
    done = _agent("run", "What is 1234 * 5678?", "--tool-choice", "calc", "--json", "--no-save", home=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["tool_calls"][0]["tool"] == "calc" and out["tool_calls"][0]["result"] == "7006652"
    assert out["response"].startswith("CALL(calc")


@pytest.mark.parametrize(("args", "words"), [(["--tool-choice", "weather"], ["'weather'", "not a registered tool"]),
                                             (["--tool-choice", "required", "--no-tools"], ["needs tools"])])
def test_a_tool_choice_that_cannot_hold_is_refused_before_the_model_loads(tmp_path: Path, args: list[str],
                                                                          words: list[str]) -> None:
    done = _agent("run", "hi", "--model", str(tmp_path / "no-model"), *args, home=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert all(word in done.stderr for word in words), done.stderr
