"""What `agent chat` and `agent run` share: their options, and building a ChatSession from them.

torch, transformers, lark and llguidance load inside the functions that need them (marked), so
`agent --help`, `agent sessions list` and `agent tools list` start without the model stack.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agent import demo_model
from agent.config import STRATEGIES, DecodeConfig
from agent.grammar.errors import GrammarError
from agent.paths import default_db_path
from agent.safe_text import printable
from agent.sessions.store import DEFAULT_TIMEOUT_S, SessionStore, StoreError
from agent.tooling.spec import ToolError

if TYPE_CHECKING:
    from agent.model.runtime import LoadedModel
    from agent.tooling.records import ToolCallRecord
    from agent.tooling.registry import ToolRegistry
    from agent.turn import ChatSession

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
Command = TypeVar("Command", bound=Callable[..., Any])
Options = dict[str, Any]  # the parsed options of `chat` / `run`, by parameter name
Confirm = Callable[["ToolCallRecord"], bool]


def decoding_options(func: Command) -> Command:
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
        click.option("--budget", type=int, default=None,
                     help="Forward passes a search strategy may spend (default: twice --max-new-tokens)."),
        click.option("--max-tool-calls", type=int, default=None,
                     help="Tool calls one response may make; after that the model must answer in words "
                          "(default 8, 0 = no limit)."),
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


# the options that are DecodeConfig fields, under the same names
CONFIG_FIELDS = ("strategy", "seed", "max_new_tokens", "temperature", "top_k", "top_p", "min_p",
                 "repetition_penalty", "budget", "max_tool_calls")


def build_config(opts: Options) -> DecodeConfig:
    """A DecodeConfig from CLI options; options left unset keep the defaults."""
    values = {name: opts[name] for name in CONFIG_FIELDS if opts.get(name) is not None}
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
    path = demo_model.demo_model_dir()
    if not (path / "config.json").is_file():
        raise click.ClickException(
            "no model named and the demo model is not installed. Name one with --model PATH, "
            "where PATH is a directory written by save_pretrained (config, weights and tokenizer), "
            "e.g. agent chat --model ~/models/my-llama"
        )
    return str(path)


def load_lm(opts: Options) -> LoadedModel:
    """The model named by --model (else the demo model) on --device in --dtype."""
    from agent.model.runtime import ModelLoadError, load_model  # torch and transformers: only when a model loads

    try:
        return load_model(resolve_model(opts.get("model")), device=opts.get("device"), dtype=opts.get("dtype"))
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from exc


def load_registry(opts: Options) -> ToolRegistry | None:
    """The tools (built-ins, installed, --tools files); None with --no-tools or --grammar."""
    if opts.get("no_tools") or opts.get("grammar_file"):
        if opts.get("tool_files") and opts.get("no_tools"):
            raise click.UsageError("--tools and --no-tools cannot be used together")
        return None
    from agent.tooling.registry import build_registry  # the built-in tools load lark

    try:
        return build_registry(tuple(opts.get("tool_files") or ()))
    except (ToolError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


def read_grammar(opts: Options) -> str | None:
    """The text of --grammar, checked; None when not given."""
    path = opts.get("grammar_file")
    if not path:
        return None
    from agent.grammar.checking import check_grammar, read_grammar_file  # llguidance and lark: only for --grammar

    try:
        text = read_grammar_file(Path(path))
    except GrammarError as exc:
        raise click.ClickException(printable(str(exc))) from None
    errors = check_grammar(text)
    if errors:
        raise click.ClickException(printable(f"grammar {path} is not valid:\n"
                                             + "\n".join(f"  {path}:{e}" for e in errors)))
    return text


def store_timeout() -> float:
    """Seconds to wait for another process's write lock on the session database: AGENT_DB_TIMEOUT,
    else agent.sessions.store.DEFAULT_TIMEOUT_S."""
    text = os.environ.get("AGENT_DB_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise click.UsageError(f"AGENT_DB_TIMEOUT must be a number of seconds >= 0, not {text!r}")
    return seconds


def open_store(opts: Options) -> SessionStore | None:
    """The session database (--db, else the default one); None with --no-save. One that cannot be
    written (made by a newer version) is refused here, before the model loads."""
    if opts.get("no_save"):
        return None
    try:
        store = SessionStore.open(Path(opts["db"]) if opts.get("db") else default_db_path(), timeout=store_timeout())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if store.read_only_reason is not None:
        store.close()
        raise click.ClickException(f"{store.read_only_reason}; or pass --no-save")
    return store


def _close_session(session: ChatSession) -> None:
    """At the command's end: save the turns still pending (a locked database) and close the store;
    what cannot be saved is named in a clean error (exit status 1), after the answer was printed."""
    try:
        session.close()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


def build_session(opts: Options, confirm: Confirm | None, session_id: str | None = None) -> ChatSession:
    """A ChatSession from the options: config, grammar, tools and store checked before the model loads."""
    from agent.turn import ChatSession  # torch: only when a conversation starts

    config = build_config(opts)
    grammar = read_grammar(opts)
    registry = load_registry(opts)
    store = open_store(opts)
    try:
        session = ChatSession(load_lm(opts), registry, config, user_grammar=grammar, confirm=confirm, store=store,
                              session_id=session_id)
    except BaseException as exc:
        if store is not None:
            store.close()  # no session to close it later
        if isinstance(exc, StoreError):
            raise click.ClickException(str(exc)) from exc
        raise
    # the store closes with the command (pending turns saved first, or named in its error)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(lambda: _close_session(session))
    return session
