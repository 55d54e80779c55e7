"""Which call forms a model is offered: the demo model (trained on the protocol) keeps the SEARCH(...) and
LOAD(...) short forms; any other model is shown, and may write, only CALL(name, ...), so that it chooses
the tool at its name."""

from __future__ import annotations

import pytest

from agent.config import DecodeConfig
from agent.demo_model import demo_model_dir
from agent.grammar.protocol import ProtocolError
from agent.model.runtime import LoadedModel, load_model
from agent.tooling.registry import default_registry
from agent.turn import ChatSession


@pytest.fixture(scope="module")
def demo_lm() -> LoadedModel:
    return load_model(str(demo_model_dir()), device="cpu")


def test_a_model_not_trained_on_the_protocol_is_shown_only_the_call_form(tiny_lm: LoadedModel) -> None:
    prompt = ChatSession(tiny_lm, default_registry(), DecodeConfig()).system_prompt
    assert "CALL(search, query: str)" in prompt and "CALL(load, id: int)" in prompt
    assert 'Answer: CALL(search, query="capital of France")' in prompt  # the worked example
    assert "SEARCH(" not in prompt and "LOAD(" not in prompt


def test_the_demo_model_keeps_its_short_forms(demo_lm: LoadedModel) -> None:
    prompt = ChatSession(demo_lm, default_registry(), DecodeConfig()).system_prompt
    assert "SEARCH(query: str)" in prompt and "LOAD(id: int)" in prompt
    assert "Examples:" not in prompt  # it was trained on the bare tool list
    answer = ChatSession(demo_lm, default_registry(), DecodeConfig()).ask("What is the capital of France?")
    assert answer.response.startswith('SEARCH("'), answer.response


@pytest.mark.parametrize("strategy", ["greedy", "sample", "tree"])
def test_every_call_of_another_model_opens_with_call(tiny_lm: LoadedModel, strategy: str) -> None:
    openings = []
    for seed in range(4):
        config = DecodeConfig(strategy=strategy, tool_choice="required", max_new_tokens=20, budget=40, seed=seed)
        result = ChatSession(tiny_lm, default_registry(), config, confirm=lambda call: False).ask("Find Paris.")
        openings += [call.call_text.split("(")[0] for call in result.tool_calls]
        assert result.response.startswith("CALL("), result.response
    assert set(openings) == {"CALL"}


def test_the_short_forms_do_not_parse_for_another_model(tiny_lm: LoadedModel) -> None:
    session = ChatSession(tiny_lm, default_registry(), DecodeConfig())
    grammar = session.make_constraint().grammar
    assert [s.kind for s in grammar.parse('CALL(search, query="Paris")\n=> x\nDone.')] == ["call", "island", "text"]
    with pytest.raises(ProtocolError):
        grammar.parse('SEARCH("Paris")\n=> x\nDone.')
