"""--optional-args omit: calls carry only a tool's required arguments (the grammar knows no others) and the
tool runs with its own defaults; `allow`, the default, lets the model write optional ones too."""

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
from agent.tooling.registry import ToolRegistry
from agent.turn import ChatSession

AREA_TOOL = '''
from agent.tooling import tool


@tool
def area(radius: float, unit: str = "square metres") -> str:
    """The area of a circle."""
    return f"{3.14159 * radius * radius:.2f} {unit}"
'''


@pytest.fixture()
def area_file(tmp_path: Path) -> Path:
    path = tmp_path / "area_tool.py"
    path.write_text(AREA_TOOL, encoding="utf-8")
    return path


@pytest.fixture()
def registry(area_file: Path) -> ToolRegistry:
    registry = ToolRegistry()
    registry.load_file(area_file)
    return registry


def test_the_grammar_without_optional_arguments_refuses_them(registry: ToolRegistry) -> None:
    with_unit = 'CALL(area, radius=2, unit="cm")\n=> 12.57 cm\n'
    assert [s.kind for s in build_turn_grammar(registry, "required").parse(with_unit)][:2] == ["call", "island"]
    trimmed = build_turn_grammar(registry.required_only(), "required")
    with pytest.raises(ProtocolError):
        trimmed.parse(with_unit)
    call = trimmed.parse_call("CALL(area, radius=2)")
    assert (call.tool, call.args) == ("area", {"radius": 2})
    assert [p.name for p in registry.get("area").params] == ["radius", "unit"]  # the registry itself is kept


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_omit_holds_for_every_strategy_and_the_tool_uses_its_default(tiny_lm: LoadedModel, registry: ToolRegistry,
                                                                      strategy: str) -> None:
    config = DecodeConfig(strategy=strategy, tool_choice="area", optional_args="omit", max_new_tokens=24,
                          budget=48, beam_width=2, num_samples=2, grad_steps=1, top_candidates=2)
    session = ChatSession(tiny_lm, registry, config, confirm=lambda call: False)
    result = session.ask("What is the area of a circle of radius 2?")
    assert result.tool_calls, result.response
    call = result.tool_calls[0]
    assert call.tool == "area" and set(call.args) == {"radius"}, result.response
    assert str(call.result).endswith("square metres"), call.result


def test_set_optional_args_in_the_repl_form(tiny_lm: LoadedModel, registry: ToolRegistry) -> None:
    session = ChatSession(tiny_lm, registry, DecodeConfig())
    session.set_config(session.config.set_from_text("optional_args", "omit"))
    assert session.config.optional_args == "omit"
    with pytest.raises(ValueError, match="optional_args must be one of allow, omit"):
        session.config.set_from_text("optional_args", "sometimes")


def _agent(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_run_omits_the_optional_argument_on_the_demo_model(tmp_path: Path, area_file: Path) -> None:
    done = _agent("run", "What is the area of a circle of radius 2?", "--tools", str(area_file),
                  "--tool-choice", "area", "--optional-args", "omit", "--json", "--no-save", home=tmp_path)
    assert done.returncode == 0, done.stderr
    call = json.loads(done.stdout)["tool_calls"][0]
    assert call["tool"] == "area" and set(call["args"]) == {"radius"}
    assert call["result"].endswith("square metres")


def test_an_unknown_optional_args_value_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    done = _agent("run", "hi", "--model", str(tmp_path / "no-model"), "--optional-args", "sometimes", home=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--optional-args" in done.stderr and "allow" in done.stderr
