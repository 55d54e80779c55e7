"""`agent sessions ...` (list, show, export, search, delete) and `agent replay ID [--rerun]`.

Thin shells over agent.sessions: they open the store, resolve an id prefix, and print.
Nothing here imports torch unless `replay --rerun` needs the model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
from rich.console import Console
from rich.text import Text

from agent.cli.options import CONTEXT, check_db_folder, store_timeout
from agent.paths import default_db_path
from agent.render import printable, render_session, sessions_table, sessions_tsv, snippet, terminal_json
from agent.render_tree import render_stored_tree
from agent.sessions.export import FORMATS, export_session
from agent.sessions.replay import (
    RerunOutcome,
    RunTurn,
    missing_tool_files,
    recorded_tool_files,
    recorded_tool_sources,
    rerun,
)
from agent.sessions.store import SessionStore, StoreError

if TYPE_CHECKING:
    from agent.tooling.rebuild import ToolRebuild

Command = TypeVar("Command", bound=Callable[..., object])


def db_option(func: Command) -> Command:
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Session database (default: sessions.sqlite in $AGENT_HOME, else the user data directory).",
    )(func)


@contextmanager
def opened(db: Path | None) -> Iterator[SessionStore]:
    """The store at --db (or the default path); StoreError becomes a clean CLI error. A database of
    a newer version opens read-only: reading commands work, with its warning on stderr."""
    if db is not None:
        check_db_folder(db.expanduser())  # a mistyped --db creates nothing
    try:
        store = SessionStore.open(db.expanduser() if db is not None else default_db_path(), timeout=store_timeout())
    except StoreError as e:
        raise click.ClickException(str(e)) from e
    if store.warning:
        click.echo(f"warning: {store.warning}", err=True)
    try:
        yield store
    except StoreError as e:
        raise click.ClickException(str(e)) from e
    finally:
        store.close()


def _console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)  # CliRunner swaps sys.stdout


@click.group("sessions", context_settings=CONTEXT)
def sessions_command_group() -> None:
    """Browse saved sessions: list, show, export, search, delete.

    Every chat and run is saved (unless --no-save) in one SQLite file, readable with any SQLite
    tool. Session ids may be shortened to any unique prefix.

    \b
    Example:
      agent sessions list
      agent sessions show 3f2a9c
    """


@sessions_command_group.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@db_option
def list_cmd(as_json: bool, db: Path | None) -> None:
    """List sessions, newest first: id, started, model, turns, title.

    On a terminal: a table that fits its width. To a pipe or file: tab-separated lines, a header first.

    \b
    Example:
      agent sessions list --json | jq '.[0].id'
      agent sessions list | grep -i capital | cut -f1
    """
    with opened(db) as store:
        rows = store.list_sessions()
    if as_json:
        click.echo(terminal_json(rows))
        return
    if not rows:
        click.echo("no sessions yet (start one with: agent chat)")
        return
    if not sys.stdout.isatty():
        click.echo(sessions_tsv(rows))
        return
    _console().print(sessions_table(rows))


@sessions_command_group.command("show", context_settings=CONTEXT)
@click.argument("session_id", metavar="ID")
@db_option
def show_cmd(session_id: str, db: Path | None) -> None:
    """Show a session turn by turn (tool calls and their `=> ...` islands marked).

    \b
    Example:
      agent sessions show 3f2a9c
    """
    with opened(db) as store:
        render_session(store, store.resolve_id(session_id), _console())


@sessions_command_group.command("export", context_settings=CONTEXT)
@click.argument("session_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True,
              help="json: everything stored (messages, tool calls, candidates, config); markdown: a transcript.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
@db_option
def export_cmd(session_id: str, fmt: str, output: Path | None, db: Path | None) -> None:
    """Export a session as JSON or Markdown.

    \b
    Example:
      agent sessions export 3f2a9c --format markdown -o chat.md
    """
    with opened(db) as store:
        text = export_session(store, store.resolve_id(session_id), fmt)
    if output is None:
        # the markdown transcript is verbatim model text: a terminal gets it with controls made printable
        click.echo(printable(text) if fmt == "markdown" and sys.stdout.isatty() else text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise click.ClickException(f"cannot write {output}: {e}") from e
    click.echo(f"wrote {output}", err=True)


@sessions_command_group.command("search", context_settings=CONTEXT)
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print matches as a JSON array.")
@click.option("--limit", type=int, default=50, show_default=True, help="Most matches to show.")
@db_option
def search_cmd(text: str, as_json: bool, limit: int, db: Path | None) -> None:
    """Full-text search over all messages (words as typed, best matches first).

    \b
    Example:
      agent sessions search "capital of France"
    """
    with opened(db) as store:
        rows = store.search(text, limit=limit)
    if as_json:
        click.echo(terminal_json(rows))
        return
    if not rows:
        click.echo(printable(f"no message matches {text!r}"))
        return
    for hit in rows:
        click.echo(f"{hit['session_id']}  turn {hit['turn']}  {hit['role']}: {snippet(hit['text'])}")


@sessions_command_group.command("delete", context_settings=CONTEXT)
@click.argument("session_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@db_option
def delete_cmd(session_id: str, yes: bool, db: Path | None) -> None:
    """Delete a session with its messages, tool calls and candidates.

    \b
    Example:
      agent sessions delete 3f2a9c --yes
    """
    with opened(db) as store:
        full_id = store.resolve_id(session_id)
        session = store.get_session(full_id)
        if not yes:
            title = session["title"] or next((r["title"] for r in store.list_sessions() if r["id"] == full_id), None)
            click.confirm(printable(f"delete session {full_id} ({title or 'untitled'})?"), abort=True)
        store.delete(full_id)
    click.echo(f"deleted {full_id}")


@click.command("replay", context_settings=CONTEXT)
@click.argument("session_id", metavar="ID")
@click.option("--rerun", "rerun_requested", is_flag=True,
              help="Re-execute every turn with the stored model, seed and decoding config; report per "
                   "turn identical or a diff. Exit status 0 only when all are identical.")
@click.option("--tools", "tool_files", multiple=True, type=click.Path(dir_okay=False),
              help="With --rerun: a tools file the session used (repeatable). Tool files named in the "
                   "session are never imported from it: a session file is data.")
@click.option("--mcp", "mcp_servers", multiple=True, metavar="COMMAND",
              help="With --rerun: an MCP server the session used (repeatable; config.json's servers start "
                   "too). A server's command is never run from the session.")
@click.option("--trees", is_flag=True, help="Also draw the search tree stored with each turn (strategies that "
              "explore branches store one), as `agent sessions tree` does.")
@db_option
@click.pass_context
def replay_command(ctx: click.Context, session_id: str, rerun_requested: bool, tool_files: tuple[str, ...],
                   mcp_servers: tuple[str, ...], trees: bool, db: Path | None) -> None:
    """Replay a saved session turn by turn, or re-run it to check it is reproducible.

    \b
    Example:
      agent replay 3f2a9c
      agent replay 3f2a9c --trees
      agent replay 3f2a9c --rerun --tools my_tools.py --mcp "uvx mcp-server-time"
    """
    with opened(db) as store:
        full_id = store.resolve_id(session_id)
        if not rerun_requested:
            console = _console()
            render_session(store, full_id, console)
            for number in range(1, store.next_turn(full_id)) if trees else ():
                tree = store.search_tree(full_id, number)
                if tree is not None:
                    console.print(Text(f"\nsearch tree of turn {number}", style="bold"))
                    console.print(render_stored_tree(tree))
            return
        sources = recorded_tool_sources(store, full_id)
        tools = _rebuild(ctx, tool_files, mcp_servers) if sources else None
        problems = tools.problems(sources) if tools is not None else []
        if problems:  # one line per tool: which, its recorded source, what is missing now
            raise click.ClickException(printable("\n".join(problems)))
        missing = [] if sources else missing_tool_files(recorded_tool_files(store, full_id), tool_files)
        if missing:
            raise click.ClickException(printable(
                f"session {full_id} used tool files that were not given: {', '.join(missing)}. Re-run with "
                "--tools FILE for each (a tools file is Python: importing it runs its code, so it is taken "
                "only from the command line, never from the session)"))
        outcomes = rerun(store, full_id, _runner(ctx, tool_files, tools), on_result=_print_outcome)
    identical = sum(o.status == "identical" for o in outcomes)
    failed = [o for o in outcomes if not o.ok]
    skipped = sum(o.status == "skipped" for o in outcomes)
    click.echo(f"{identical} identical, {len(failed)} not, {skipped} skipped, of {len(outcomes)} turns")
    if failed:
        sys.exit(1)


def _rebuild(ctx: click.Context, tool_files: tuple[str, ...], mcp_servers: tuple[str, ...]) -> ToolRebuild:
    """The session's tools rebuilt from what the command line gives (servers stop when the command ends)."""
    from agent.tooling.rebuild import ToolRebuild  # the built-in tools load lark: only for a re-run

    tools = ToolRebuild(tool_files, mcp_servers)
    ctx.call_on_close(tools.close)
    return tools


def _runner(ctx: click.Context, tool_files: tuple[str, ...], tools: ToolRebuild | None = None) -> RunTurn:
    """The turn runner: ctx.obj["run_turn"] when given (tests, embedding), else agent.rerun.rerun_turn
    with the --tools files."""
    if isinstance(ctx.obj, dict) and ctx.obj.get("run_turn") is not None:
        return ctx.obj["run_turn"]
    try:
        from agent.rerun import rerun_turn  # torch: only when a turn is re-run
    except ImportError as e:
        raise click.ClickException(f"--rerun needs the model stack (agent.rerun.rerun_turn): {e}") from e
    return partial(rerun_turn, tool_files=tool_files, tools=tools)


def _print_outcome(outcome: RerunOutcome) -> None:
    if outcome.status == "identical":
        click.echo(f"turn {outcome.turn}: identical")
    elif outcome.status == "different":
        click.echo(f"turn {outcome.turn}: different")
        click.echo(printable(outcome.diff), nl=False)  # the diff is model text
    else:
        click.echo(printable(f"turn {outcome.turn}: {outcome.status}: {outcome.detail}"))
