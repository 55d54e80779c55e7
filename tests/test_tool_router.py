"""`--tool-router`: under `--tool-choice required` the tool is chosen from the question as well as from the
model's first tokens (agent.decoding.tool_router), and the response then calls that tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agent.config import DecodeConfig
from agent.context import fit_prompt
from agent.decoding.tool_router import channel_request, opening_tokens
from agent.grammar.protocol import call_opening
from agent.model.chat_format import prompt_token_ids
from agent.model.runtime import LoadedModel, load_model
from agent.render_usage import answer_line
from agent.tooling.registry import default_registry
from agent.tooling.spec import tool
from agent.turn import ChatSession
from test_native_formats import build_lm
from tiny_model import build_tiny_llama

QUESTION = "What is 12 * 7?"


@pytest.fixture(scope="module")
def sharp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # weights large enough that what the model predicts depends on the context (tiny_model.build_tiny_llama):
    # a score computed on the wrong context must come out different
    return build_tiny_llama(tmp_path_factory.mktemp("sharp-llama"), init_std=0.2)


@pytest.fixture(scope="module")
def sharp_lm(sharp_dir: Path) -> LoadedModel:
    return load_model(str(sharp_dir), device="cpu")


def _logprob(lm: LoadedModel, context: list[int], tokens: list[int]) -> float:
    """log P(tokens | context), from one plain forward pass over both (no cache)."""
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([context + tokens])).logits[0]
    steps = torch.log_softmax(logits.float(), dim=-1)
    return float(sum(steps[len(context) - 1 + i, token] for i, token in enumerate(tokens)))


def _session(lm: LoadedModel, strategy: str = "greedy", **options: str) -> ChatSession:
    config = DecodeConfig(strategy=strategy, max_new_tokens=20, budget=40, beam_width=2, num_samples=2,
                          **options)
    return ChatSession(lm, default_registry(), config, confirm=lambda call: False)


def test_the_routed_tool_is_the_best_of_opening_plus_channel_and_the_response_calls_it(sharp_lm: LoadedModel) -> None:
    session = _session(sharp_lm, tool_choice="required", tool_router="channel")
    prompt = fit_prompt(sharp_lm.tokenizer, session.messages, QUESTION, 20, None).prompt_ids
    result = session.ask(QUESTION)

    encode = sharp_lm.tokenizer.encode
    question = encode(QUESTION, add_special_tokens=False)
    expected = {}
    for spec in default_registry():
        text, cut = call_opening(spec)
        opening = opening_tokens(sharp_lm, text, cut)  # the call's own tokens, up to its argument's content
        assert text[:cut].startswith(sharp_lm.tokenizer.decode(opening)) and len(opening) >= 2
        direct = _logprob(sharp_lm, prompt, opening)
        asked = prompt_token_ids(sharp_lm.tokenizer, [{"role": "user", "content": channel_request(spec)}])
        expected[spec.name] = direct + _logprob(sharp_lm, asked, question)
    route = result.tool_route
    assert route is not None
    got = {name: route["direct"][name] + route["channel"][name] for name in expected}
    assert got == pytest.approx(expected, abs=1e-3)
    assert route["tool"] == max(expected, key=expected.get)
    assert result.tool_calls and result.tool_calls[0].tool == route["tool"]
    assert f"tool {route['tool']} chosen by the router" in answer_line(result)  # the REPL's line says so


@pytest.mark.parametrize("strategy", ["greedy", "beam", "tree"])
def test_a_routed_answer_is_the_answer_that_names_the_tool(sharp_lm: LoadedModel, strategy: str) -> None:
    # routing runs the prompt on the session's KV cache and scores continuations on it: the answer that
    # follows must be exactly what the same strategy writes when told the tool by name
    routed = _session(sharp_lm, strategy, tool_choice="required", tool_router="channel").ask(QUESTION)
    assert routed.tool_route is not None
    named = _session(sharp_lm, strategy, tool_choice=routed.tool_route["tool"]).ask(QUESTION)
    assert routed.response == named.response
    assert routed.tool_route["tool"] == routed.tool_calls[0].tool


def test_auto_routes_a_model_not_trained_on_the_protocol_and_model_leaves_the_choice_to_it(
        sharp_lm: LoadedModel) -> None:
    assert _session(sharp_lm, tool_choice="required").ask(QUESTION).tool_route is not None
    unrouted = _session(sharp_lm, tool_choice="required", tool_router="model").ask(QUESTION)
    assert unrouted.tool_route is None and unrouted.tool_calls
    # only a required call is routed: under auto the model may answer without a call
    assert _session(sharp_lm, tool_choice="auto", tool_router="channel").ask(QUESTION).tool_route is None


def test_run_json_reports_the_route_and_a_bad_router_is_refused(sharp_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "AGENT_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "agent.cli", "run", QUESTION, "--model", str(sharp_dir), "--no-save",
            "--max-new-tokens", "16", "--tool-choice", "required"]
    done = subprocess.run([*base, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["tool_route"]["tool"] == out["tool_calls"][0]["tool"]
    assert set(out["tool_route"]["channel"]) == set(default_registry().names())
    bad = subprocess.run([*base, "--tool-router", "dice"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "dice" in bad.stderr


@pytest.mark.parametrize("fmt", ["hermes", "llama3", "mistral"])
def test_a_native_format_is_routed_on_request_and_calls_the_routed_tool(fmt: str) -> None:
    lm = build_lm(fmt)  # a tiny model carrying the format's real chat template
    routed = ChatSession(lm, default_registry(), DecodeConfig(max_new_tokens=30, tool_choice="required",
                                                              tool_router="channel"),
                         confirm=lambda call: False).ask(QUESTION)
    assert routed.tool_route is not None and routed.tool_calls
    assert routed.tool_calls[0].tool == routed.tool_route["tool"]
    # auto leaves a model's own trained format to the model
    unrouted = ChatSession(lm, default_registry(), DecodeConfig(max_new_tokens=30, tool_choice="required"),
                           confirm=lambda call: False).ask(QUESTION)
    assert unrouted.tool_route is None


def test_a_second_routed_turn_scores_the_question_as_a_fresh_session_does(sharp_lm: LoadedModel) -> None:
    # the channel requests' KV is kept from the first routed turn and cut back after each question
    session = _session(sharp_lm, tool_choice="required", tool_router="channel")
    session.ask("Show me document 3.")
    again = session.ask(QUESTION).tool_route
    fresh = _session(sharp_lm, tool_choice="required", tool_router="channel").ask(QUESTION).tool_route
    assert again is not None and fresh is not None
    assert again["channel"] == pytest.approx(fresh["channel"], abs=1e-4)


def test_many_tools_are_scored_over_several_passes_alike(sharp_lm: LoadedModel) -> None:
    # six tools: twelve rows, more than one scoring pass holds; each score still equals a plain pass
    registry = default_registry()

    @tool()
    def weather(city: str) -> str:
        """Today's weather in a city."""
        return "sunny"

    @tool()
    def translate(text: str, language: str) -> str:
        """Translate a text into a language."""
        return text

    registry.register(weather)
    registry.register(translate)
    config = DecodeConfig(max_new_tokens=12, tool_choice="required", tool_router="channel")
    session = ChatSession(sharp_lm, registry, config, confirm=lambda call: False,
                          system_prompt="Answer with a tool call.")  # the tiny model's context is 1024 tokens
    route = session.ask(QUESTION).tool_route
    assert route is not None and set(route["channel"]) == set(registry.names())
    question = sharp_lm.tokenizer.encode(QUESTION, add_special_tokens=False)
    for spec in registry:
        asked = prompt_token_ids(sharp_lm.tokenizer, [{"role": "user", "content": channel_request(spec)}])
        assert route["channel"][spec.name] == pytest.approx(_logprob(sharp_lm, asked, question), abs=1e-3)
