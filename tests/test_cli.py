"""The CLI through a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

REQUIRED_FIELDS = {"response", "model", "strategy", "seed", "new_tokens", "seconds"}


def agent(*args: str, home: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_run_json_prints_one_object_with_the_fields(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = agent("run", "hello", "--model", str(tiny_model_dir), "--json", "--no-tools", "--max-new-tokens", "12",
                 "--seed", "3", home=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)  # exactly one JSON document on stdout
    assert REQUIRED_FIELDS <= payload.keys()
    assert payload["strategy"] == "greedy" and payload["seed"] == 3
    assert payload["new_tokens"] == 12 and payload["seconds"] > 0 and payload["saved"] is True
    assert payload["model"] == str(tiny_model_dir.resolve())
    again = agent("run", "hello", "--model", str(tiny_model_dir), "--json", "--no-tools", "--max-new-tokens", "12",
                  "--seed", "3", home=tmp_path)
    assert json.loads(again.stdout)["response"] == payload["response"]


def test_run_streams_plain_text(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = agent("run", "hello", "--model", str(tiny_model_dir), "--no-tools", "--strategy", "sample",
                 "--temperature", "0.9", "--top-k", "20", "--top-p", "0.9", "--max-new-tokens", "6", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_a_directory_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hi")
    done = agent("run", "hello", "--model", str(not_a_model), home=tmp_path)
    assert done.returncode != 0
    assert "not a model directory" in done.stderr and "config.json" in done.stderr
    assert "Traceback" not in done.stderr
    missing = agent("run", "hello", "--model", str(tmp_path / "nope"), home=tmp_path)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


def test_bad_option_values_are_rejected(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = agent("run", "hello", "--model", str(tiny_model_dir), "--top-p", "1.5", home=tmp_path)
    assert done.returncode == 2 and "top_p" in done.stderr
    done = agent("run", "hello", "--model", str(tiny_model_dir), "--max-tool-calls", "-1", home=tmp_path)
    assert done.returncode == 2 and "max_tool_calls" in done.stderr


def test_every_command_help_has_an_example() -> None:
    from click.testing import CliRunner

    from agent.cli import main

    runner = CliRunner()

    def walk(group: click.Group, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += walk(command, path + [name])
            else:
                found.append(path + [name])
        return found

    for path in walk(main, []):
        result = runner.invoke(main, path + ["--help"])
        assert result.exit_code == 0, path
        assert "agent " in result.output and "xample" in result.output, f"{' '.join(path)} --help lacks an example"


def test_no_model_and_no_demo_model_explains_how_to_name_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import agent.demo_model as demo
    from agent.cli.options import resolve_model

    monkeypatch.setattr(demo, "demo_model_dir", lambda: tmp_path / "absent")
    with pytest.raises(click.ClickException, match="--model PATH"):
        resolve_model(None)


def test_a_session_without_tools_reruns_identically(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = agent("run", "hello", "--model", str(tiny_model_dir), "--json", "--no-tools", "--strategy", "sample",
                 "--seed", "9", "--max-new-tokens", "10", home=tmp_path)
    session_id = json.loads(done.stdout)["session_id"]
    rerun = agent("replay", session_id[:6], "--rerun", home=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "identical" in rerun.stdout


def test_run_refuses_a_message_longer_than_the_context(tmp_path: Path) -> None:
    paste = "The quick brown fox jumps over the lazy dog. " * 450  # ~20 KB, far over the demo model's 512 tokens
    done = agent("run", paste, "--no-save", home=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "too long for the model's context" in done.stderr and "512 tokens" in done.stderr
    short = agent("run", "What is 12 * 12?", "--json", "--no-save", home=tmp_path)
    assert json.loads(short.stdout)["context_tokens"]["limit"] == 512
