"""The `agent` command line: chat (the REPL), run (one answer), and the tool/session/grammar groups."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from agent.config import STRATEGIES, DecodeConfig

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def decoding_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `chat` and `run`: model, decoding, tools, grammar, store."""
    options = [
        click.option("--model", "-m", "model", metavar="PATH_OR_ID", default=None,
                     help="Hugging Face causal LM: a local directory or a cached hub id "
                          "(default: the shipped demo model)."),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, mps or auto."),
        click.option("--dtype", default="auto", show_default=True, help="float32, bfloat16, float16 or auto."),
        click.option("--strategy", "-s", type=click.Choice(STRATEGIES), default=None,
                     help="How the response is chosen (default: greedy)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed (runs are reproducible)."),
        click.option("--max-new-tokens", type=int, default=256, show_default=True,
                     help="Most tokens the model may generate per response (islands not counted)."),
        click.option("--temperature", "-t", type=float, default=None, help="Sampling temperature (default 1.0)."),
        click.option("--top-k", type=int, default=None, help="Sample among the k likeliest tokens (0 = off)."),
        click.option("--top-p", type=float, default=None, help="Nucleus sampling mass (1.0 = off)."),
        click.option("--min-p", type=float, default=None, help="Drop tokens below min-p x the top probability."),
        click.option("--repetition-penalty", type=float, default=None, help="Penalty for repeated tokens (1.0 = off)."),
        click.option("--budget", type=int, default=None, help="Forward passes a search strategy may spend (default: twice --max-new-tokens)."),
        click.option("--max-tool-calls", type=int, default=None,
                     help="Tool calls one response may make; after that the model must answer in words (default 8, 0 = no limit)."),
        click.option("--tools", "tool_files", multiple=True, type=click.Path(dir_okay=False),
                     help="A Python file of @tool functions to register (repeatable)."),
        click.option("--no-tools", is_flag=True, help="No tools and no tool grammar: free text."),
        click.option("--grammar", "grammar_file", type=click.Path(dir_okay=False), default=None,
                     help="A Lark grammar the response must match (e.g. grammars/json.lark)."),
        click.option("--yes", "-y", is_flag=True, help="Run tools with side effects without asking."),
        click.option("--db", type=click.Path(dir_okay=False), default=None,
                     help="Session database (default: sessions.sqlite in AGENT_HOME or the user data dir)."),
        click.option("--no-save", is_flag=True, help="Do not save this session."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_config(opts: dict[str, Any]) -> DecodeConfig:
    """A DecodeConfig from CLI options; options left unset keep the defaults."""
    fields = {"strategy": "strategy", "seed": "seed", "max_new_tokens": "max_new_tokens",
              "temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
              "repetition_penalty": "repetition_penalty", "budget": "budget", "max_tool_calls": "max_tool_calls"}
    values = {field: opts[key] for key, field in fields.items() if opts.get(key) is not None}
    if "strategy" not in values:
        values["strategy"] = "sample" if opts.get("temperature") not in (None, 0) else "greedy"
    try:
        return DecodeConfig(**values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def resolve_model(name: str | None) -> str:
    """The model to load: the one named, else the shipped demo model."""
    if name:
        return name
    from agent.demo_model import demo_model_dir

    path = demo_model_dir()
    if not (path / "config.json").is_file():
        raise click.ClickException(
            "no model named and the demo model is not installed. Name one with --model PATH, "
            "where PATH is a directory written by save_pretrained (config, weights and tokenizer), "
            "e.g. agent chat --model ~/models/my-llama"
        )
    return str(path)


def load_lm(opts: dict[str, Any]):
    from agent.model.runtime import ModelLoadError, load_model

    try:
        return load_model(resolve_model(opts.get("model")), device=opts.get("device"), dtype=opts.get("dtype"))
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from exc


def load_registry(opts: dict[str, Any]):
    if opts.get("no_tools") or opts.get("grammar_file"):
        if opts.get("tool_files") and opts.get("no_tools"):
            raise click.UsageError("--tools and --no-tools cannot be used together")
        return None
    from agent.tooling.registry import build_registry
    from agent.tooling.spec import ToolError

    try:
        return build_registry(tuple(opts.get("tool_files") or ()))
    except (ToolError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


def read_grammar(opts: dict[str, Any]) -> str | None:
    path = opts.get("grammar_file")
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise click.ClickException(f"cannot read grammar {path}: {exc}") from exc
    from agent.grammar.constraint import check_grammar

    errors = check_grammar(text)
    if errors:
        raise click.ClickException(f"grammar {path} is not valid:\n" + "\n".join(f"  {path}:{e}" for e in errors))
    return text


def open_store(opts: dict[str, Any]):
    if opts.get("no_save"):
        return None
    from agent.paths import default_db_path
    from agent.sessions.store import SessionStore, StoreError

    try:
        return SessionStore.open(Path(opts["db"]) if opts.get("db") else default_db_path())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


def build_session(opts: dict[str, Any], confirm: Callable[..., bool] | None, session_id: str | None = None):
    from agent.turn import ChatSession

    config = build_config(opts)
    grammar = read_grammar(opts)
    registry = load_registry(opts)
    store = open_store(opts)
    lm = load_lm(opts)
    from agent.sessions.store import StoreError

    try:
        return ChatSession(lm, registry, config, user_grammar=grammar, confirm=confirm, store=store,
                           session_id=session_id)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="agent-shell")
def main() -> None:
    """A terminal agent shell for local language models that searches before it speaks.

    \b
    Examples:
      agent chat                          # the REPL on the shipped demo model
      agent run "What is 1234 * 5678?"    # one answer, then exit
      agent run "hi" --model ./my-model --json
      agent tools list
      agent sessions list
    """


@main.command(context_settings=CONTEXT)
@decoding_options
@click.option("--session", "session_id", default=None, help="Continue a saved session (see `agent sessions list`).")
def chat(session_id: str | None, **opts: Any) -> None:
    """Chat in the REPL. Enter sends; Esc then Enter (or Alt+Enter) starts a new line.

    \b
    Slash commands: /help /exit /clear /set name=value /model /tools /sessions /resume ID /alts /tree.
    Ctrl-C stops a generation (the partial answer is kept); Ctrl-D exits.

    \b
    Examples:
      agent chat
      agent chat --model ~/models/qwen2.5-0.5b-instruct --strategy tree --budget 64
      agent chat --session 3f2a9c
    """
    from agent.repl import Repl, ask_confirmation

    confirm = (lambda record: True) if opts.get("yes") else ask_confirmation
    session = build_session(opts, confirm, session_id)
    Repl(session, model_loader=lambda name: load_lm({**opts, "model": name})).run()


@main.command(context_settings=CONTEXT)
@click.argument("prompt")
@decoding_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the response and its figures.")
@click.option("--session", "session_id", default=None, help="Continue a saved session.")
def run(prompt: str, as_json: bool, session_id: str | None, **opts: Any) -> None:
    """Answer PROMPT once and exit (tools with side effects need --yes).

    \b
    Examples:
      agent run "What is 1234 * 5678?"
      agent run "hello" --model ./my-model --json
      agent run "Give me a JSON object" --grammar grammars/json.lark --strategy sample -t 0.8
    """
    confirm = (lambda record: True) if opts.get("yes") else None
    session = build_session(opts, confirm, session_id)
    stream = None if as_json else functools.partial(_write, sys.stdout)
    result = session.ask(prompt, on_token=stream)
    if as_json:
        payload = {
            "response": result.response,
            "model": session.lm.model_id,
            "strategy": session.config.strategy,
            "seed": session.config.seed,
            "new_tokens": result.new_tokens,
            "seconds": round(result.seconds, 4),
            "finish_reason": result.finish_reason,
            "tool_calls": [c.to_dict() for c in result.tool_calls],
            "session_id": result.session_id,
            "candidates": result.candidates,
            "forward_passes": result.forward_passes,
            "backward_passes": result.backward_passes,
            "score": result.score,
            "refinement": result.refinement,
        }
        click.echo(json.dumps(payload, ensure_ascii=False))
    else:
        click.echo("")


def _write(stream: Any, piece: str) -> None:
    stream.write(piece)
    stream.flush()


def _add_command_groups() -> None:
    """Command groups that live in their own modules (one module per command group)."""
    from agent.cli.sessions import replay_command, sessions_command_group
    from agent.cli.tools import grammar_command_group, kb_command_group, tools_command_group

    for command in (tools_command_group, kb_command_group, grammar_command_group, sessions_command_group,
                    replay_command):
        main.add_command(command)


_add_command_groups()


if __name__ == "__main__":
    main()
