"""What a newcomer sees on stderr: nothing they did not cause (no library warnings, no log lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import DecodeConfig
from agent.decoding.search import search_response
from agent.model.runtime import LoadedModel


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", "run", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("strategy", ["greedy", "tree", "beam"])
def test_agent_run_on_the_demo_model_leaves_stderr_empty(strategy: str, tmp_path: Path) -> None:
    done = _run(tmp_path, "What is 1234 * 5678?", "--strategy", strategy)
    assert done.returncode == 0, done.stderr
    assert "7006652" in done.stdout
    assert done.stderr == ""


def test_the_model_is_called_with_the_cache_keyword_its_forward_takes(tiny_lm: LoadedModel,
                                                                     recwarn: pytest.WarningsRecorder) -> None:
    # every kind of forward pass: the decode loop (greedy), the token tree (beam, tree), refinement
    for strategy in ("greedy", "beam", "tree", "tree+grad"):
        config = DecodeConfig(strategy=strategy, max_new_tokens=6, budget=8, grad_steps=1)
        search_response(tiny_lm, tiny_lm.tokenizer.encode("hello there"), config)
    assert [str(w.message) for w in recwarn] == []
