"""The terminal's view of a streamed answer in a model's own format: the template's tool-result
message is shown as the island line `=> result`, however the stream is cut into pieces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.island_view import IslandView
from test_native_formats import build_lm

PREFIX = "<|im_end|>\n<|im_start|>user\n<tool_response>\n"
SUFFIX = "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
CALL = '<tool_call>\n{"name": "calc", "arguments": {"expr": "2+2"}}\n</tool_call>'
STREAM = CALL + PREFIX + "4" + SUFFIX + "It is 4."
SHOWN = '<tool_call>\n{"name": "calc", "arguments": {"expr": "2+2"}}\n</tool_call>\n=> 4\nIt is 4.'


@pytest.mark.parametrize("size", [1, 3, 7, len(STREAM)])
def test_the_island_is_shown_as_one_line_whatever_the_pieces(size: int) -> None:
    shown: list[str] = []
    view = IslandView(shown.append, PREFIX, SUFFIX, json_content=False)
    for start in range(0, len(STREAM), size):
        view.push(STREAM[start:start + size])
    view.flush()
    assert "".join(shown) == SHOWN


def test_json_content_and_text_that_only_looks_like_a_prefix() -> None:
    shown: list[str] = []
    view = IslandView(shown.append, "[TOOL_RESULTS] ", "[/TOOL_RESULTS]", json_content=True)
    for piece in ("I said [TOOL", " not really.", ' [TOOL_RESULTS] "line 1\\nline 2"[/TOOL_RESULTS]', "Done"):
        view.push(piece)
    view.flush()
    assert "".join(shown) == "I said [TOOL not really. \n=> line 1\\nline 2\nDone"


def test_agent_run_shows_a_native_island_as_a_line_and_stores_the_templates_form(tmp_path: Path) -> None:
    lm = build_lm("hermes")
    lm.model.save_pretrained(tmp_path / "model")
    lm.tokenizer.save_pretrained(tmp_path / "model")
    db = str(tmp_path / "s.sqlite")
    args = ["run", "What is 2 + 2?", "--model", str(tmp_path / "model"), "--tool-choice", "calc",
            "--max-new-tokens", "30", "--db", db]
    shown = CliRunner().invoke(main, args, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    stored = json.loads(CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False).output)
    island = stored["tool_calls"][0]
    assert "<tool_response>" in stored["response"] and "<|im_start|>" in stored["response"]
    assert "<tool_response>" not in shown.output and "<|im_start|>" not in shown.output
    assert f"\n=> {island['result'] or 'error: ' + island['error']}" in shown.output
