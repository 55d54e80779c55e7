"""The samplers of p(x)^alpha reach their target: on a response space small enough to enumerate (three
allowed tokens, exactly three of them: 27 responses), each Metropolis-Hastings chain's empirical
distribution comes within total variation 0.05 of the exact p^alpha, computed by scoring every
response. The target is far from the model's own p there, so a sampler of p would fail."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agent.config import DecodeConfig
from agent.decoding.mcmc import SuffixSampler
from agent.decoding.token_moves import MoveStats, SequenceScorer, move_step
from agent.decoding.token_tree import Node, TokenTree
from agent.model.runtime import LoadedModel
from agent.tooling.records import ToolCallRecord
from agent.tooling.registry import default_registry
from agent.turn import ChatSession
from enumerable import ChoiceConstraint, Response, exact_power, total_variation

ALPHA = 2.0
LENGTH = 3


def space(lm: LoadedModel) -> tuple[list[int], list[int]]:
    tok = lm.tokenizer
    prompt = tok("hello there, how are you?")["input_ids"]
    choices = [tok.encode(word)[0] for word in ("yes", "no", " fox")]
    return prompt, choices


def test_the_target_is_not_the_model_itself(tiny_lm: LoadedModel) -> None:
    prompt, choices = space(tiny_lm)
    target = exact_power(tiny_lm, prompt, choices, LENGTH, False, ALPHA)
    model = exact_power(tiny_lm, prompt, choices, LENGTH, False, 1.0)
    assert len(target) == 27 and abs(sum(target.values()) - 1.0) < 1e-9
    assert total_variation(target, {k: round(v * 10**9) for k, v in model.items()}) > 0.2


@pytest.mark.parametrize(("proposal_temperature", "steps"), [(1 / ALPHA, 8000), (1.0, 8000)])
def test_suffix_resampling_samples_p_to_the_alpha(tiny_lm: LoadedModel, proposal_temperature: float,
                                                  steps: int) -> None:
    prompt, choices = space(tiny_lm)
    target = exact_power(tiny_lm, prompt, choices, LENGTH, False, ALPHA)

    def make() -> ChoiceConstraint:
        return ChoiceConstraint(choices, LENGTH, tiny_lm.vocab_size, tiny_lm.eos_token_ids, allow_eos=False)

    config = DecodeConfig(strategy="mcmc", max_new_tokens=LENGTH, alpha=ALPHA)
    tree = TokenTree.open(tiny_lm, prompt, config, make)
    sampler = SuffixSampler(tree, ALPHA, proposal_temperature, torch.Generator().manual_seed(0), budget=10**6)
    counts: collections.Counter[Response] = collections.Counter()

    def record(node: Node) -> None:
        ids, _ = node.response_ids()
        counts[(tuple(ids), False)] += 1

    state = sampler.initial()
    assert state is not None
    sampler.run(state, steps, on_state=record)
    assert sum(counts.values()) == steps
    assert 0.05 < sampler.stats.acceptance < 1.0  # a real chain: some proposals are refused
    assert total_variation(target, counts) < 0.05
    # every prefix went through the model once: the 27 responses cost at most 1 + 3 + 9 passes
    assert tree.forward_passes <= 13


@pytest.mark.parametrize("move", ["gradient", "model"])
def test_single_token_moves_sample_p_to_the_alpha(tiny_lm: LoadedModel, move: str) -> None:
    prompt, choices = space(tiny_lm)
    target = exact_power(tiny_lm, prompt, choices, LENGTH, False, ALPHA)

    def make() -> ChoiceConstraint:
        return ChoiceConstraint(choices, LENGTH, tiny_lm.vocab_size, tiny_lm.eos_token_ids, allow_eos=False)

    scorer = SequenceScorer(tiny_lm, prompt, [False] * LENGTH, ended_with_eos=False, make_constraint=make,
                            max_new_tokens=LENGTH)
    state = scorer.evaluate([choices[0]] * LENGTH, grad=move == "gradient")
    assert state is not None
    stats, generator = MoveStats(), torch.Generator().manual_seed(0)
    counts: collections.Counter[Response] = collections.Counter()
    for _ in range(30000):
        state = move_step(scorer, state, move, ALPHA, 1 / ALPHA, generator, stats)
        counts[(state.ids, False)] += 1
    assert 0.05 < stats.acceptance < 1.0
    assert total_variation(target, counts) < 0.05
    # a token outside the three is never proposed: such a response is not in the space
    assert set(k[0] for k in counts) <= set(k[0] for k in target)
    outside = next(t for t in range(tiny_lm.vocab_size) if t not in choices and t not in tiny_lm.eos_token_ids)
    assert scorer.evaluate([choices[0], choices[1], outside]) is None


def agent(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_mcmc_runs_from_the_command_line_and_alpha_needs_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    common = ("run", "hi", "--model", str(tiny_model_dir), "--no-tools", "--no-save", "--max-new-tokens", "4")
    done = agent(*common, "--strategy", "mcmc", "--alpha", "8", "--budget", "16", home=tmp_path)
    assert done.returncode == 0, done.stderr
    refused = agent(*common, "--alpha", "8", home=tmp_path)
    assert refused.returncode == 2 and "--alpha does not apply to the greedy strategy" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = agent(*common, "--strategy", "mcmc", "--alpha", "0", home=tmp_path)
    assert bad.returncode == 2 and "alpha must be a finite number > 0" in bad.stderr


def test_mcmc_never_runs_a_side_effect_while_it_samples(tiny_lm: LoadedModel) -> None:
    # every response must open with a call of `note` (a side effect): proposals reach it with other texts
    # (undeferred, such a chain asked twice in a trial run), and only the answer it ends on may ask to run it
    asked: list[str] = []

    def confirm(call: ToolCallRecord) -> bool:
        asked.append(call.tool)
        return False

    config = DecodeConfig(strategy="mcmc", max_new_tokens=30, budget=120, alpha=1.0, tool_choice="note")
    result = ChatSession(tiny_lm, default_registry(), config, confirm=confirm).ask("Write a note.")
    assert result.response.startswith("CALL(note, ")
    assert asked == ["note"]
