"""The README's examples on the shipped model do what the README says: each `agent run` line of its code
blocks that needs no other model runs, in order, in one fresh agent home, as a new user would type it;
and the transcript the README shows is what the shell prints."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _code_blocks() -> list[list[str]]:
    """The README's fenced code blocks, each as its lines."""
    blocks: list[list[str]] = []
    inside = False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
            if inside:
                blocks.append([])
        elif inside:
            blocks[-1].append(line)
    return blocks


def _shipped_model_examples() -> list[str]:
    """`agent run` command lines (a pipe into it too), comments cut, that use the shipped model; and the
    `agent templates save` lines before them (a template example runs the template saved above it)."""
    examples = []
    for line in (line for block in _code_blocks() for line in block):
        command = re.sub(r"\s+#\s.*$", "", line).strip()
        if command.startswith("agent templates save"):
            examples.append(command)
        elif (command.startswith("agent run") or "| agent run" in command) and "--model" not in command:
            examples.append(command)
    return examples


def _shell(command: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # the `agent` script installed beside this Python
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_every_shipped_model_example_runs_cleanly_and_answers_sensibly(tmp_path: Path) -> None:
    examples = _shipped_model_examples()
    assert len(examples) >= 6, examples  # the README's "Using it" block is found
    (tmp_path / "notes.txt").write_text("The capital of Pretend is Hathaes.\n", encoding="utf-8")
    home = tmp_path / "home"
    for command in examples:
        done = _shell(command, tmp_path, home)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert done.stderr == "", (command, done.stderr)  # no warning, no traceback, nothing a user did not cause
        answer = done.stdout.strip()
        assert answer, command
        if command.startswith("agent templates save"):
            continue
        if "1234 * 5678" in command:
            assert "=> 7006652" in answer and answer.endswith("7006652."), (command, answer)
        if "12 * 12" in command:
            assert "=> 144" in answer, (command, answer)
        # the protocol's calls are well formed and answered (an island follows each)
        assert answer.count("\n=> ") == len(re.findall(r"^(SEARCH|LOAD|CALL)\(", answer, re.M)), answer


def test_the_transcript_the_readme_shows_is_what_the_shell_prints(tmp_path: Path) -> None:
    typed, *shown = next(block for block in _code_blocks() if block and block[0].startswith("$ agent run"))
    command = shlex.split(typed[2:])
    done = _shell(shlex.join(command) + " --no-save", tmp_path, tmp_path / "home")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.strip().splitlines() == shown
