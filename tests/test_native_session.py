"""A model whose chat template has its own tool-call syntax, end to end through the `agent` command:
the format is picked from the template, the call is written in it and runs, the island is the
template's tool-result form, the session records the format, a second turn goes on from the stored
history, and replay reruns the turn identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.sessions.store import SessionStore
from test_native_formats import build_lm
from tiny_model import build_tiny_llama

# what each format's call opens with and its island carries
MARKS = {"hermes": ("<tool_call>", "<tool_response>"), "llama3": ('{"name": "calc"', "ipython"),
         "mistral": ("[TOOL_CALLS]", "[TOOL_RESULTS]")}


def _save(fmt: str, folder: Path) -> Path:
    lm = build_lm(fmt)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def _run(*args: str) -> dict:
    done = CliRunner().invoke(main, ["run", *args, "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return json.loads(done.output.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", sorted(MARKS))
def test_a_native_session_calls_in_the_models_own_format_and_replays(tmp_path: Path, fmt: str) -> None:
    model = _save(fmt, tmp_path / "model")
    db = str(tmp_path / "s.sqlite")
    common = ["--model", str(model), "--db", db, "--max-new-tokens", "40"]
    first = _run("What is 1234 * 5678?", "--tool-choice", "calc", *common)
    call_mark, island_mark = MARKS[fmt]
    assert first["tool_calls"] and first["tool_calls"][0]["tool"] == "calc"
    assert call_mark in first["response"] and island_mark in first["response"], first["response"]
    assert "CALL(" not in first["response"]
    sid = first["session_id"]
    with SessionStore.open(Path(db)) as store:
        system = store.history(sid)[0]
    assert system["role"] == "system" and "CALL(" not in system["content"]  # no protocol explained
    exported = json.loads(CliRunner().invoke(main, ["sessions", "export", sid, "--format", "json", "--db", db]).output)
    assert exported["turns"][0]["config"]["tool_format"] == fmt  # the format used, not `auto`
    second = _run("And 2 + 2?", "--session", sid, *common)  # the history (with the island) renders again
    assert second["session_id"] == sid
    replayed = CliRunner().invoke(main, ["replay", sid, "--rerun", "--db", db], catch_exceptions=False)
    assert replayed.exit_code == 0, replayed.output
    assert "turn 1: identical" in replayed.output and "turn 2: identical" in replayed.output


def test_a_native_format_on_a_model_without_a_chat_template_is_a_clear_error(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "plain", chat_template=False)
    done = CliRunner().invoke(main, ["run", "hi", "--model", str(model), "--tool-format", "hermes", "--no-save"])
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    assert "'hermes' needs the model's chat template" in done.output and "--tool-format protocol" in done.output
