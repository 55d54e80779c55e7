"""A search's limits: a wall-clock limit ends it with its best answer so far, its token tree stays
within a memory budget in bytes, and an answer the budget cut off never outranks a finished one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from agent.config import DecodeConfig
from agent.decoding import limits
from agent.decoding.results import Candidate, rank
from agent.decoding.search import search_response
from agent.demo_model import demo_model_dir
from agent.model.chat_format import prompt_token_ids
from agent.model.runtime import LoadedModel, load_model

SEARCHES = ["beam", "best-of-n", "tree", "tree+grad"]


@contextmanager
def stepped_clock(lm: LoadedModel, monkeypatch: pytest.MonkeyPatch, *, per_row: bool = False) -> Iterator[list[int]]:
    """The search's clock moves one second with every forward pass (no sleeping: the clock is stepped), or
    with `per_row` one second for every sequence a pass runs (a pass of 4 rows: 4 s), the cost of a pass
    on a CPU that gains little from batching."""
    seconds = [0]

    def hook(module: Any, args: Any, kwargs: Any) -> None:
        seconds[0] += int(kwargs["input_ids"].shape[0]) if per_row else 1

    monkeypatch.setattr(limits, "clock", lambda: float(seconds[0]))
    handle = lm.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seconds
    finally:
        handle.remove()


def _prompt(lm: LoadedModel) -> list[int]:
    return lm.tokenizer.encode("<|user|>\nhello there<|end|>\n<|assistant|>\n")


@pytest.mark.parametrize("strategy", SEARCHES)
def test_a_time_limit_ends_the_search_with_its_best_answer_so_far(tiny_lm: LoadedModel, strategy: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = DecodeConfig(strategy=strategy, max_new_tokens=24, budget=20000, num_samples=3, grad_steps=2, seed=3)
    with stepped_clock(tiny_lm, monkeypatch) as passes:
        result = search_response(tiny_lm, _prompt(tiny_lm), config.replace(time_limit=8.5))
    assert passes[0] <= 10  # the prompt, 8 seconds of search, and the pass that crossed the limit
    assert result.best.text and result.candidates
    # Ended by its budget, not by the user: no candidate says "interrupted".
    assert all(c.finish_reason != "interrupted" for c in result.candidates)
    with stepped_clock(tiny_lm, monkeypatch) as passes:
        search_response(tiny_lm, _prompt(tiny_lm), config.replace(budget=30))
    assert passes[0] > 12  # without the limit the same search goes on (here to a budget of 30 passes)


def test_time_limit_is_a_setting_and_an_option(tiny_lm: LoadedModel) -> None:
    assert DecodeConfig().set_from_text("time_limit", "2.5").time_limit == 2.5
    with pytest.raises(ValueError, match="time_limit"):
        DecodeConfig(time_limit=-1)


def test_tree_grad_with_a_large_budget_stays_within_the_memory_budget(tiny_lm: LoadedModel,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # budget 20000 passes, cut at 300 (stepped clock) to keep the test fast; the tree grows all the while.
    config = DecodeConfig(strategy="tree+grad", max_new_tokens=24, budget=20000, grad_steps=2, time_limit=300)
    with stepped_clock(tiny_lm, monkeypatch):
        unbounded = search_response(tiny_lm, _prompt(tiny_lm), config)
    kv_budget = 200_000
    assert unbounded.kv_peak_bytes > 5 * kv_budget  # the budget below is far less than the tree wants
    with stepped_clock(tiny_lm, monkeypatch):
        bounded = search_response(tiny_lm, _prompt(tiny_lm), config.replace(kv_budget_bytes=kv_budget))
    assert 0 < bounded.kv_peak_bytes <= kv_budget
    assert bounded.forward_passes >= 290  # it went on searching within the budget
    assert bounded.best.text and len(bounded.candidates) == len(unbounded.candidates)
    # Dropped branches are remembered as dead ends, never grown again.
    nodes = bounded.tree.subtree()
    memory_dead = [n for n in nodes if n.status in ("dead", "closed") and n.reason == "memory budget"]
    assert memory_dead
    assert all(not n.children for n in memory_dead if n.status == "dead")


def _candidate(text: str, score: float, finish: str) -> Candidate:
    return Candidate(text=text, token_ids=[1], island_mask=[False], logprobs=[score], score=score, finish_reason=finish)


def test_an_answer_cut_off_by_the_budget_never_outranks_a_finished_one() -> None:
    cut = _candidate("The answer is", -0.1, "budget")
    finished = [_candidate("42.", -1.5, "eos"), _candidate("Forty-two, as computed.", -0.9, "length")]
    ranked = rank([cut, *finished])
    assert [c.text for c in ranked] == ["Forty-two, as computed.", "42.", "The answer is"]
    assert rank([cut]) == [cut]  # with nothing finished, the cut-off answer is still the answer


def test_under_a_time_limit_the_tree_has_the_greedy_answer_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # Time for about one answer: the tree's first dive is greedy's (one beam wide), so what comes back is
    # an answer, finished, and greedy's; a first dive as wide as the beams would still be under way.
    demo = load_model(str(demo_model_dir()), device="cpu")
    prompt = prompt_token_ids(demo.tokenizer, [{"role": "user", "content": "hello, how are you?"}])
    config = DecodeConfig(max_new_tokens=48, budget=20000)
    with stepped_clock(demo, monkeypatch, per_row=True) as rows:
        greedy = search_response(demo, prompt, config.replace(strategy="greedy"))
    assert greedy.best.finish_reason == "eos"
    with stepped_clock(demo, monkeypatch, per_row=True):
        tree = search_response(demo, prompt, config.replace(strategy="tree", time_limit=rows[0] + 1))
    assert (tree.best.text, tree.best.finish_reason) == (greedy.text, "eos")
