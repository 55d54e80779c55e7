"""A model on the plain template (no chat template of its own, as Gemma 3 270M's GGUF file) never
writes the next turn's role header into its answer, with or without tools, for every strategy.

The model here learned, in a few steps of training on the spot, to go on after its answer with
`### User` and a made-up question, as the real models did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agent.config import STRATEGIES, DecodeConfig
from agent.model.runtime import LoadedModel, load_model
from agent.tooling.registry import default_registry
from agent.turn import ChatSession
from tiny_model import build_tiny_llama

QUESTION = "hello there, how are you today?"
ANSWER = "I am fine, thank you."
RUN_ON = "\n\n### User\nWhat is the weather like?\n\n### Assistant\nyes"


def _session(lm: LoadedModel, tools: bool, strategy: str = "greedy") -> ChatSession:
    config = DecodeConfig(strategy=strategy, max_new_tokens=40, budget=80, beam_width=2, num_samples=2,
                          grad_steps=1, top_candidates=2)
    return ChatSession(lm, default_registry() if tools else None, config, confirm=lambda call: False)


def _teach_run_on(lm: LoadedModel) -> None:
    """Train the model until it answers QUESTION with ANSWER and goes on with the next turn's header."""
    examples = []
    for tools in (False, True):
        session = _session(lm, tools)
        messages = session.messages + [{"role": "user", "content": QUESTION}]
        from agent.model.chat_format import prompt_token_ids  # the prompt exactly as the turn renders it

        prompt = prompt_token_ids(lm.tokenizer, messages)
        answer = lm.tokenizer.encode(ANSWER + RUN_ON, add_special_tokens=False)
        examples.append((prompt, answer))
    lm.model.requires_grad_(True)
    optimizer = torch.optim.Adam(lm.model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(150):
        for prompt, answer in examples:
            ids = torch.tensor([prompt + answer])
            labels = ids.clone()
            labels[0, : len(prompt)] = -100
            loss = lm.model(input_ids=ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    lm.model.requires_grad_(False)
    lm.model.eval()


@pytest.fixture(scope="module")
def run_on_lm(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = build_tiny_llama(Path(tmp_path_factory.mktemp("plain")) / "model", chat_template=False)
    lm = load_model(str(path))
    _teach_run_on(lm)
    return lm


def test_the_model_really_writes_the_header_when_nothing_stops_it(run_on_lm: LoadedModel) -> None:
    # without the stop (an explicit empty template would be a chat template): the learned run-on is there
    from agent.decoding.decode import decode  # the bare decode loop, no turn around it

    prompt = run_on_lm.tokenizer.encode("### User\n" + QUESTION + "\n\n### Assistant\n", add_special_tokens=False)
    text = decode(run_on_lm, [run_on_lm.tokenizer.bos_token_id or 0] + prompt, DecodeConfig(max_new_tokens=30)).text
    assert "### User" in text, text


@pytest.mark.parametrize("tools", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_strategy_writes_a_role_header(run_on_lm: LoadedModel, strategy: str, tools: bool) -> None:
    shown: list[str] = []  # what the terminal shows as the answer streams
    result = _session(run_on_lm, tools, strategy).ask(QUESTION, on_token=shown.append)
    assert "###" not in result.response, result.response
    assert "###" not in "".join(shown) and "".join(shown) == result.response
    if strategy == "greedy":
        assert result.response.strip() == ANSWER
