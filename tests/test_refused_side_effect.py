"""`agent run` says when a side effect was refused: the answer may read as if the thing were done, so the
exit status (3), a line on stderr and the JSON tell a script that it was not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NOTE = "Take a note: buy milk"


def _agent(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", "run", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_a_refused_note_exits_3_and_says_so_on_stderr(tmp_path: Path) -> None:
    done = _agent(NOTE, "--no-save", home=tmp_path)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stdout.startswith('CALL(note, text="buy milk")')  # the answer is still printed whole
    assert "note has side effects and was not run" in done.stdout  # its island
    assert done.stderr.strip() == "refused: note has side effects and was not run (pass --yes to allow it)"
    assert not (tmp_path / "notes.txt").exists()


def test_the_json_names_the_refused_call(tmp_path: Path) -> None:
    done = _agent(NOTE, "--json", home=tmp_path)
    assert done.returncode == 3 and done.stderr == "", done.stderr
    out = json.loads(done.stdout)
    assert out["refused_side_effects"] == ["note"]
    assert out["tool_calls"][0]["tool"] == "note" and out["tool_calls"][0]["refused"] is True
    assert out["saved"] is True  # the turn is stored as it happened


def test_with_yes_the_note_is_written_and_the_exit_status_is_0(tmp_path: Path) -> None:
    done = _agent(NOTE, "--json", "--yes", "--no-save", home=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["refused_side_effects"] == [] and out["tool_calls"][0]["refused"] is False
    assert (tmp_path / "notes.txt").read_text().strip().endswith("buy milk")


def test_a_pure_call_is_never_counted_as_refused(tmp_path: Path) -> None:
    done = _agent("What is 1234 * 5678?", "--json", "--no-save", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["refused_side_effects"] == []
