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
from agent.applicable import explain, tool_choice_problem
from agent.cli.grammar_names import TEMPLATE_NOTE, is_template, resolve_grammar
from agent.config import GROUND_NUMBERS, OPTIONAL_ARGS, STRATEGIES, TOOL_FORMATS, TOOL_ROUTERS, DecodeConfig
from agent.grammar.errors import GrammarError
from agent.model.aliases import AliasError, resolve_alias
from agent.model.backend import GRADIENTS, BackendError, weights_needed
from agent.paths import default_db_path
from agent.safe_text import printable
from agent.sessions.store import DEFAULT_TIMEOUT_S, SessionStore, StoreError
from agent.tooling.spec import ToolError

if TYPE_CHECKING:
    from agent.model.backend import ModelBackend
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
                          "(default: demo, the shipped demo model)."),
        click.option("--backend", type=click.Choice(("local", "openai")), default="local", show_default=True,
                     help="Where the model runs: here (transformers), or behind an OpenAI-compatible completions "
                          "server (llama.cpp's, vLLM...) at --base-url; --model then names the same model here "
                          "for its tokenizer and chat template."),
        click.option("--base-url", metavar="URL", default=None,
                     help="--backend openai: the server's API root, e.g. http://127.0.0.1:8080/v1."),
        click.option("--server-model", metavar="NAME", default=None,
                     help="--backend openai: the model's name on the server (default: the first it lists)."),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, mps or auto."),
        click.option("--dtype", default="auto", show_default=True, help="float32, bfloat16, float16 or auto."),
        # no short form: -s is --system, as in llm
        click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
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
        click.option("--time-limit", type=float, default=None, metavar="SECONDS",
                     help="A search ends after this many seconds with its best answer so far (default: none)."),
        click.option("--alpha", type=float, default=None,
                     help="mcmc: sample responses from p(x)^alpha (default 4; 1 = the model itself)."),
        click.option("--max-tool-calls", type=int, default=None,
                     help="Tool calls one response may make; after that the model must answer in words "
                          "(default 8, 0 = no limit)."),
        click.option("--tool-choice", metavar="auto|required|none|NAME", default=None,
                     help="Whether the response calls a tool, enforced by the grammar: auto (the model "
                          "decides; default), required (it opens with a call), none (no call), or a tool's "
                          "name (it opens with a call of that tool)."),
        click.option("--tool-format", type=click.Choice(TOOL_FORMATS), default=None,
                     help="How calls are written: the model's own trained syntax (hermes, llama3, mistral: "
                          "tools shown through its chat template) or our protocol (SEARCH(...) / CALL(...)). "
                          "Default auto: picked from the chat template."),
        click.option("--optional-args", type=click.Choice(OPTIONAL_ARGS), default=None,
                     help="Whether calls may carry a tool's optional arguments: allow (default) or omit (only "
                          "the required ones, the tool's defaults for the rest; small models invent values)."),
        click.option("--tool-router", type=click.Choice(TOOL_ROUTERS), default=None,
                     help="Which tool a required call uses: model (its first tokens decide), channel (the "
                          "question decides too: how likely it is under each tool's description) or auto "
                          "(default: channel for a local model on our protocol that was not trained on it)."),
        click.option("--ground-numbers", type=click.Choice(GROUND_NUMBERS), default=None,
                     help="Whether a call's numbers lean to the ones you and the tools wrote (a number the "
                          "conversation never wrote costs the model ln 50): on, off or auto "
                          "(default: on for a local model on our protocol that was not trained on it)."),
        click.option("--tools", "tool_files", multiple=True, type=click.Path(dir_okay=False),
                     help="A Python file of @tool functions, or a .json file of OpenAI-style function definitions "
                          "(run by the function of the same name in a .py file also given); repeatable."),
        click.option("--mcp", "mcp_servers", multiple=True, metavar='"COMMAND ARGS..."',
                     help="An MCP server to start (stdio): its tools are registered, called through it, and it "
                          "stops with the command (repeatable). Servers in AGENT_HOME/config.json "
                          "(mcpServers) start too."),
        click.option("--no-tools", is_flag=True, help="No tools and no tool grammar: free text."),
        click.option("--grammar", "grammar_file", type=click.Path(dir_okay=False), default=None,
                     help="A Lark grammar the response must match: a file, or a shipped one by name "
                          "(json, yes_no; see `agent grammar list`)."),
        click.option("--system", "-s", "system", metavar="TEXT", default=None,
                     help="Your own system text, on its own line after the tool instructions (with --no-tools: "
                          "the whole system prompt); for a new session only."),
        click.option("--continue", "-c", "continue_latest", is_flag=True,
                     help="Continue the latest saved session (the one most recently written to)."),
        click.option("--yes", "-y", is_flag=True, help="Run tools with side effects without asking."),
        click.option("--db", type=click.Path(dir_okay=False), default=None,
                     help="Session database (default: sessions.sqlite in AGENT_HOME or the user data dir)."),
        click.option("--create", is_flag=True, help="With --db: create the database's folder when it is missing."),
        click.option("--no-save", is_flag=True, help="Do not save this session."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# the options that are DecodeConfig fields, under the same names
CONFIG_FIELDS = ("strategy", "seed", "max_new_tokens", "temperature", "top_k", "top_p", "min_p",
                 "repetition_penalty", "budget", "time_limit", "alpha", "max_tool_calls", "tool_choice",
                 "tool_format", "optional_args", "tool_router", "ground_numbers")


def build_config(opts: Options) -> DecodeConfig:
    """A DecodeConfig from CLI options; options left unset keep the defaults."""
    values = {name: opts[name] for name in CONFIG_FIELDS if opts.get(name) is not None}
    if "strategy" not in values:
        values["strategy"] = "sample" if opts.get("temperature") not in (None, 0) else "greedy"
    try:
        config = DecodeConfig(**values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    # an option the strategy never reads is a mistake (temperature 0 under greedy says the same thing)
    given = [name for name in values if not (name == "temperature" and values[name] == 0)]
    problem = explain(config.strategy, given, flags=True)
    if problem:
        raise click.UsageError(problem)
    return config


# Checked before the model loads; agent.model.runtime holds the same names (it needs torch to map them).
DTYPES = ("auto", "float32", "fp32", "float16", "fp16", "bfloat16", "bf16")
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")


def check_device_and_dtype(opts: Options) -> None:
    """--device and --dtype name something that exists (whether CUDA is present is known only to torch)."""
    device = str(opts.get("device") or "auto")
    kind, _, index = device.partition(":")
    if kind not in DEVICE_TYPES or (index and (kind != "cuda" or not index.isdigit())) or device.endswith(":"):
        raise click.BadParameter(printable(f"{device!r} is not a device; use cpu, cuda, cuda:N, mps or auto"),
                                 param_hint="--device")
    dtype = str(opts.get("dtype") or "auto")
    if dtype not in DTYPES:
        raise click.BadParameter(printable(f"{dtype!r} is not a dtype; use one of {', '.join(DTYPES)}"),
                                 param_hint="--dtype")


def resolve_model(name: str | None) -> str:
    """The model to load: the one named (an alias from `agent models alias` names its target, unless a
    path of that name is here), else (or for the name `demo`, unless a folder of that name is here) the
    shipped demo model."""
    try:
        name = resolve_alias(name or "") or name
    except AliasError as exc:
        raise click.ClickException(printable(str(exc))) from None
    if name and not (name == "demo" and not Path(name).exists()):
        return name
    path = demo_model.demo_model_dir()
    if not (path / "config.json").is_file():
        raise click.ClickException(
            "no model named and the demo model is not installed. Name one with --model PATH, "
            "where PATH is a directory written by save_pretrained (config, weights and tokenizer), "
            "e.g. agent chat --model ~/models/my-llama"
        )
    return str(path)


def load_lm(opts: Options) -> ModelBackend:
    """The model named by --model (else the demo model) on --device in --dtype, or served at --base-url."""
    from agent.model.runtime import ModelLoadError, load_model  # torch and transformers: only when a model loads

    try:
        if opts.get("backend") == "openai":
            from agent.model.openai_backend import load_served  # torch and transformers: only when a model loads

            try:
                return load_served(resolve_model(opts.get("model")), opts["base_url"], opts.get("server_model"))
            except BackendError as exc:
                raise click.ClickException(printable(str(exc))) from exc
        return load_model(resolve_model(opts.get("model")), device=opts.get("device"), dtype=opts.get("dtype"))
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from exc


def check_backend(opts: Options, config: DecodeConfig) -> None:
    """--backend openai has its URL, and a strategy that can run without the weights here."""
    served = opts.get("backend") == "openai"
    for option, key in (("--base-url", "base_url"), ("--server-model", "server_model")):
        if opts.get(key) and not served:
            raise click.UsageError(f"{option} is for --backend openai")
    if not served:
        return
    if not opts.get("base_url"):
        raise click.UsageError("--backend openai needs --base-url (the server's API root, e.g. http://127.0.0.1:8080/v1)")
    if config.strategy == "tree+grad":
        raise click.UsageError(weights_needed("tree+grad", GRADIENTS))


def load_registry(opts: Options) -> ToolRegistry | None:
    """The tools (built-ins, installed, --tools files, MCP servers); None with --no-tools or --grammar."""
    if opts.get("no_tools") or opts.get("grammar_file"):
        if opts.get("no_tools"):
            for option, key in (("--tools", "tool_files"), ("--mcp", "mcp_servers")):
                if opts.get(key):
                    raise click.UsageError(f"{option} and --no-tools cannot be used together")
        return None
    return load_tools(tuple(opts.get("tool_files") or ()), tuple(opts.get("mcp_servers") or ()))


def load_tools(tool_files: tuple[str, ...], mcp_servers: tuple[str, ...]) -> ToolRegistry:
    """Built-ins, installed tools, --tools files, and the tools of the MCP servers (--mcp and the agent
    home's config.json), which start here and stop when the command ends."""
    # the built-in tools load lark; the MCP configuration goes with them (read only where tools are loaded)
    from agent.tooling.mcp_config import configured_servers
    from agent.tooling.registry import ToolRegistry, build_registry

    hub = None
    try:
        servers = configured_servers(mcp_servers)
        provided = None
        if servers:
            try:
                from agent.tooling.mcp_client import McpHub  # mcp and its async stack: only when servers are used
            except ImportError as exc:
                raise click.ClickException(f"MCP servers need the mcp package ({exc}); install it with "
                                           "pip install 'agent-shell[mcp]'") from None
            hub = McpHub()
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.call_on_close(hub.close)
            provided = ToolRegistry([spec for server in servers for spec in hub.start(server)])
            for message in hub.skipped:
                click.echo(f"warning: {message}", err=True)
        return build_registry(tool_files, provided=provided)
    except (ToolError, OSError) as exc:
        if hub is not None:
            hub.close()
        raise click.ClickException(str(exc)) from exc


def read_grammar(opts: Options) -> str | None:
    """The text of --grammar, checked; None when not given."""
    value = opts.get("grammar_file")
    if not value:
        return None
    from agent.grammar.checking import check_grammar, read_grammar_file  # llguidance and lark: only for --grammar

    path = resolve_grammar(value)
    if is_template(path):
        raise click.BadParameter(printable(f"{value} {TEMPLATE_NOTE}"), param_hint="--grammar")
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
    path = Path(opts["db"]).expanduser() if opts.get("db") else default_db_path()
    if opts.get("db"):
        check_db_folder(path, create=bool(opts.get("create")))
    try:
        store = SessionStore.open(path, timeout=store_timeout())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if store.read_only_reason is not None:
        store.close()
        raise click.ClickException(f"{store.read_only_reason}; or pass --no-save")
    return store


def check_db_folder(path: Path, *, create: bool = False) -> None:
    """--db names a file in an existing folder: a mistyped path must not leave a new folder and an empty
    database behind. With `create` (--create) the folder is made."""
    if path.parent.is_dir():
        return
    if not create:
        raise click.BadParameter(printable(f"the folder of {path} does not exist (nothing was created); check the "
                                           "path, or pass --create to make it"), param_hint="--db")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(printable(f"cannot create the folder of {path}: {exc.strerror or exc}")) from exc


def _close_session(session: ChatSession) -> None:
    """At the command's end: save the turns still pending (a locked database) and close the store;
    what cannot be saved is named in a clean error (exit status 1), after the answer was printed."""
    try:
        session.close()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


def check_continuation(opts: Options, session_id: str | None) -> None:
    """--session, -c/--continue, --no-save and -s/--system go together only where they mean one thing."""
    continuing = opts.get("continue_latest")
    if continuing and session_id is not None:
        raise click.UsageError("-c/--continue takes the latest session and --session names one: give only one")
    for given, option in ((session_id is not None, "--session"), (continuing, "-c/--continue")):
        if given and opts.get("no_save"):
            raise click.UsageError(f"{option} continues a saved session, so it cannot be used with --no-save")
        if given and opts.get("system"):  # a saved session keeps the system prompt it was started with
            raise click.UsageError(f"-s/--system sets a new session's system prompt; {option} continues one "
                                   "that has its own")


def latest_session(store: SessionStore) -> str:
    """The id of the session most recently written to (a turn, or its creation); a clear error if none."""
    listed = store.list_sessions()  # newest first: a tie on the time goes to the newer session
    if not listed:
        raise click.ClickException(f"no saved session to continue in {store.path}; start one with "
                                   'agent run "PROMPT" (or agent chat)')
    return str(max(listed, key=lambda row: row["updated"])["id"])


def build_session(opts: Options, confirm: Confirm | None, session_id: str | None = None) -> ChatSession:
    """A ChatSession from the options: config, device, grammar, tools, store, --session and --continue
    all checked before the model loads (a mistake is reported in a moment, not after the load)."""
    check_continuation(opts, session_id)
    config = build_config(opts)
    check_backend(opts, config)
    check_device_and_dtype(opts)
    grammar = read_grammar(opts)
    registry = load_registry(opts)
    problem = tool_choice_problem(config.tool_choice, registry)
    if problem:
        raise click.UsageError(printable(problem))
    store = open_store(opts)
    try:
        if session_id is not None and store is not None:
            session_id = store.resolve_id(session_id)  # unknown or ambiguous: a clear error, before the load
        elif opts.get("continue_latest") and store is not None:
            session_id = latest_session(store)
        from agent.turn import ChatSession  # torch: only once the options are known to be good

        lm = load_lm(opts)
        try:
            session = ChatSession(lm, registry, config, user_grammar=grammar, confirm=confirm, store=store,
                                  session_id=session_id, system_extra=opts.get("system") or None)
        except ValueError as exc:  # a tool format this model's template cannot take
            raise click.ClickException(printable(str(exc))) from None
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
