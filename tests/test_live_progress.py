"""While a search runs, the person sees where it stands: passes of the budget, answers found, the best so
far, updated in place (the REPL, and `agent run` when stderr is a terminal); the answer replaces the line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import STRATEGIES, DecodeConfig
from agent.decoding.progress import SearchProgress
from agent.decoding.search import search_response
from agent.decoding.strategies import strategy_for
from agent.model.runtime import LoadedModel
from terminal import chat_on_a_terminal, run_with_stderr_on_a_terminal

BRANCHING = [name for name in STRATEGIES if strategy_for(name).explores_branches]
COUNTERS = re.compile(rb"tree \xc2\xb7 pass (\d+)/64 \xc2\xb7 (\d+) answers?")  # "tree · pass 9/64 · 0 answers"


@pytest.mark.parametrize("name", BRANCHING)
def test_every_search_reports_how_it_stands(tiny_lm: LoadedModel, name: str) -> None:
    reports: list[SearchProgress] = []
    config = DecodeConfig(strategy=name, max_new_tokens=8, budget=24, grad_steps=2, top_candidates=2)
    result = search_response(tiny_lm, tiny_lm.tokenizer.encode("The quick brown fox"), config,
                             on_progress=reports.append)
    assert reports, f"{name} never said how it stands"
    assert {r.strategy for r in reports} == {name}
    passes = [r.forward_passes for r in reports]
    assert passes == sorted(passes) and 1 <= passes[0] and passes[-1] <= result.forward_passes
    assert all(r.budget == 24 for r in reports)
    for report in reports:
        assert (report.best_score is not None) == report.best_is_complete == (report.candidates > 0)


def test_streaming_strategies_report_nothing(tiny_lm: LoadedModel) -> None:
    reports: list[SearchProgress] = []
    search_response(tiny_lm, tiny_lm.tokenizer.encode("The quick brown fox"),
                    DecodeConfig(strategy="greedy", max_new_tokens=8), on_progress=reports.append)
    assert reports == []  # their text itself streams


def test_agent_run_shows_the_search_on_a_terminal_then_the_answer(tmp_path: Path) -> None:
    out, terminal, code = run_with_stderr_on_a_terminal(tmp_path, "What is 12 * 12?", "--strategy", "tree",
                                                        "--budget", "64")
    assert code == 0, terminal[-500:]
    counters = [(int(p), int(a)) for p, a in COUNTERS.findall(terminal)]
    assert counters, terminal[-500:]
    assert [p for p, _ in counters] == sorted(p for p, _ in counters)  # passes only go up
    assert b"=> 144" in out and b"pass " not in out  # the answer on stdout, the live line only on stderr
    assert terminal.endswith(b"\x1b[?25h") or b"\x1b[2K" in terminal  # the line is cleared at the end
    assert b"Traceback" not in terminal


def test_agent_run_piped_prints_no_live_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent.cli", "run", "What is 12 * 12?", "--strategy", "tree",
                           "--budget", "64", "--no-save"], capture_output=True,
                          env={"AGENT_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # a script's stderr stays empty
    assert b"=> 144" in done.stdout


def test_the_repl_shows_the_search_then_the_answer(tmp_path: Path) -> None:
    seen = chat_on_a_terminal(tmp_path, "--strategy", "tree", "--budget", "64")
    counters = COUNTERS.search(seen)
    assert counters is not None, seen[-500:]
    answer = seen.index(b"The answer is 144.")
    assert counters.start() < answer  # the live line came before the answer, which replaced it
    assert b"Traceback" not in seen
