"""Ctrl-C during an answer: every strategy keeps the best it found so far; `agent run` exits 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from agent.config import DecodeConfig
from agent.decoding.search import search_response
from agent.model.runtime import LoadedModel
from agent.render import render_alts
from agent.render_tree import render_tree
from agent.turn import ChatSession

SEARCHES = ["beam", "best-of-n", "tree", "tree+grad"]


@contextmanager
def ctrl_c_at_forward_pass(lm: LoadedModel, n: int) -> Iterator[list[int]]:
    """Ctrl-C arrives as the model starts its n-th forward pass (the REPL and `agent run` see KeyboardInterrupt)."""
    calls = [0]

    def hook(module: Any, args: Any, kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt

    handle = lm.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def _config(strategy: str) -> DecodeConfig:
    return DecodeConfig(strategy=strategy, max_new_tokens=12, budget=40, num_samples=3, grad_steps=2, seed=3)


def _prompt(lm: LoadedModel) -> list[int]:
    return lm.tokenizer.encode("<|user|>\nhello there<|end|>\n<|assistant|>\n")


@pytest.mark.parametrize("strategy", SEARCHES)
def test_ctrl_c_mid_search_keeps_the_best_answer_so_far(tiny_lm: LoadedModel, strategy: str) -> None:
    with ctrl_c_at_forward_pass(tiny_lm, 6) as calls:
        result = search_response(tiny_lm, _prompt(tiny_lm), _config(strategy))
    assert calls[0] == 6  # the search stopped at the interrupted pass
    assert result.best.text and result.best.token_ids
    assert result.candidates and all(c.finish_reason == "interrupted" for c in result.candidates)
    assert result.best.finish_reason == "interrupted"


def test_ctrl_c_during_refinement_keeps_the_tree_answer(tiny_lm: LoadedModel) -> None:
    config = _config("tree+grad")
    with ctrl_c_at_forward_pass(tiny_lm, 10**9) as calls:
        tree_only = search_response(tiny_lm, _prompt(tiny_lm), config.replace(strategy="tree"))
    tree_passes = calls[0]
    with ctrl_c_at_forward_pass(tiny_lm, tree_passes + 2):
        result = search_response(tiny_lm, _prompt(tiny_lm), config)
    assert result.best.finish_reason == "interrupted"
    assert result.best.text == tree_only.best.text
    assert [c.text for c in result.candidates] == [c.text for c in tree_only.candidates]


@pytest.mark.parametrize("strategy", SEARCHES)
def test_ctrl_c_in_the_prompt_pass_says_there_is_no_answer(tiny_lm: LoadedModel, strategy: str) -> None:
    with ctrl_c_at_forward_pass(tiny_lm, 1):
        result = search_response(tiny_lm, _prompt(tiny_lm), _config(strategy))
    assert result.best.text == "" and result.best.finish_reason == "interrupted"
    assert len(result.candidates) == 1


@pytest.mark.parametrize("strategy", SEARCHES)
def test_an_interrupted_search_turn_keeps_its_candidates_for_alts_and_tree(tiny_lm: LoadedModel,
                                                                           strategy: str) -> None:
    session = ChatSession(tiny_lm, None, _config(strategy))
    with ctrl_c_at_forward_pass(tiny_lm, 6):
        turn = session.ask("hello there")
    assert turn.interrupted and turn.response and turn.candidates
    assert turn.search is not None
    console = Console(record=True, width=120)
    console.print(render_alts(turn.search))
    console.print(render_tree(turn.search, tiny_lm.tokenizer))
    assert turn.search.best.text.strip()[:5] in console.export_text()
    assert session.messages[-1] == {"role": "assistant", "content": turn.response}


def test_agent_run_interrupted_mid_answer_exits_130(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "AGENT_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    # greedy on the random tiny model runs to the token limit: still generating when the signal comes
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "hello", "--model", str(tiny_model_dir),
                             "--no-tools", "--max-new-tokens", "900"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            # as from a terminal, whatever runs the tests: a background job inherits SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    first = proc.stdout.read(1)  # the answer has started streaming
    assert first
    os.kill(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert b"interrupted: partial answer kept (" in err  # "... (N tokens)": what was kept, on stderr
    assert len(first + rest) > 1  # what was streamed stays on screen
