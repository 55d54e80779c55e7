"""A native format on a chat template that ignores `tools` (SmolLM2's ChatML): the system prompt
lists the tools as JSON schemas with the form of a call, and the session runs end to end.

SmolLM2-135M-Instruct was trained on JSON tool calls, but its template shows no tools: passed
through `tools=` they never reach the model. Listed in the system prompt they do (bench/README.md,
real_models: the tool it names first is right on 23 of 28 prompts in the Hermes form, 9 in ours).
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent.cli import main
from agent.grammar import tool_format
from agent.grammar.native.template import template_shows_tools
from agent.model.chat_format import render_prompt
from agent.sessions.store import SessionStore
from test_native_formats import build_lm, build_tokenizer, weather_registry

# ChatML as SmolLM2 writes it: a default system line, every message as is, nothing for tools
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_a_template_that_ignores_tools_is_told_apart_from_one_that_shows_them() -> None:
    assert not template_shows_tools(build_tokenizer("hermes", CHATML_TEMPLATE))
    assert template_shows_tools(build_tokenizer("hermes"))  # Qwen2.5's
    plain = build_tokenizer("hermes")
    plain.chat_template = None
    assert not template_shows_tools(plain)


def test_the_system_prompt_lists_the_tools_only_where_the_template_does_not() -> None:
    registry = weather_registry()
    listed = tool_format.resolve(build_lm("hermes", template=CHATML_TEMPLATE), registry, "hermes")
    assert listed.tools is None and listed.listed_tools is not None
    prompt = tool_format.system_prompt(listed, registry, examples=True, extra="Be brief.")
    schemas = prompt[prompt.index("<tools>\n") + 8: prompt.index("\n</tools>")].splitlines()
    names = [json.loads(line)["function"]["name"] for line in schemas]
    assert names == [spec.name for spec in registry]  # every tool, one JSON schema a line
    weather = json.loads(schemas[names.index("weather")])["function"]["parameters"]
    assert weather["properties"]["unit"]["enum"] == ["C", "F"]
    assert '<tool_call>\n{"name": <tool name>, "arguments": <arguments as a JSON object>}\n</tool_call>' in prompt
    assert "CALL(" not in prompt and prompt.endswith("Be brief.")
    shown = tool_format.resolve(build_lm("hermes"), registry, "hermes")  # Qwen2.5's template shows them
    assert shown.tools is not None and shown.listed_tools is None
    assert "<tools>" not in tool_format.system_prompt(shown, registry, examples=True)
    tok = build_tokenizer("hermes", CHATML_TEMPLATE)
    messages = [{"role": "system", "content": prompt}, {"role": "user", "content": "weather?"}]
    assert '"enum": ["C", "F"]' in render_prompt(tok, messages)  # the model sees them


def _run(*args: str) -> dict:
    done = CliRunner().invoke(main, ["run", *args, "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return json.loads(done.output.strip().splitlines()[-1])


def test_a_session_on_a_template_without_tools_calls_in_the_hermes_form(tmp_path: Path) -> None:
    lm = build_lm("hermes", template=CHATML_TEMPLATE)
    model = tmp_path / "model"
    lm.model.save_pretrained(model)
    lm.tokenizer.save_pretrained(model)
    db = str(tmp_path / "s.sqlite")
    common = ["--model", str(model), "--db", db, "--max-new-tokens", "40", "--tool-format", "hermes"]
    first = _run("What is 1234 * 5678?", "--tool-choice", "calc", *common)
    assert first["tool_calls"] and first["tool_calls"][0]["tool"] == "calc"
    response = first["response"]
    assert response.startswith('<tool_call>\n{"name": "calc", "arguments": {"expr": ')
    assert "<tool_response>\n" in response and "</tool_response>" in response  # the published Hermes island
    with SessionStore.open(Path(db)) as store:
        system = store.history(first["session_id"])[0]
    assert system["role"] == "system" and '"name": "calc"' in system["content"] and "<tools>" in system["content"]
    replayed = CliRunner().invoke(main, ["replay", first["session_id"], "--rerun", "--db", db], catch_exceptions=False)
    assert replayed.exit_code == 0, replayed.output
    assert "turn 1: identical" in replayed.output
