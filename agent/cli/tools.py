"""`agent tools list`, `agent kb add/list/remove/search`, `agent grammar check`: thin shells over the tool modules.

Nothing here imports torch: these commands are quick. The tool registry (lark) and the grammar
checker (llguidance, lark) load inside the commands that need them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from agent.cli.grammar_names import TEMPLATE_NOTE, description, is_template, resolve_grammar, shipped
from agent.cli.options import CONTEXT, load_tools
from agent.grammar.errors import GrammarError
from agent.render import kb_table, kb_tsv, printable, tools_table
from agent.tools import kb
from agent.tools.kb_files import DEFAULT_MAX_BYTES
from agent.tools.search import search

if TYPE_CHECKING:
    pass


def _console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# agent tools


@click.group("tools", context_settings=CONTEXT)
def tools_command_group() -> None:
    """The tools the model may call: built-ins, installed packages, and --tools files.

    \b
    Examples:
      agent tools list
      agent tools list --tools my_tools.py --json
    """


@tools_command_group.command("list", context_settings=CONTEXT)
@click.option("--tools", "tool_files", multiple=True, type=click.Path(dir_okay=False),
              help="A Python file of @tool functions, or a .json file of function definitions (repeatable).")
@click.option("--mcp", "mcp_servers", multiple=True, metavar='"COMMAND ARGS..."',
              help="An MCP server whose tools to list too (repeatable); it is started, asked, and stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (name, call_signature, description, ...).")
def tools_list(tool_files: tuple[str, ...], mcp_servers: tuple[str, ...], as_json: bool) -> None:
    """List the registered tools: call form, description, and whether they have side effects.

    \b
    Examples:
      agent tools list
      agent tools list --tools ./weather_tools.py
      agent tools list --json | python -m json.tool
      agent tools list --mcp "uvx mcp-server-time"
    """
    registry = load_tools(tool_files, mcp_servers)
    if as_json:
        click.echo(json.dumps([spec.to_json() for spec in registry], ensure_ascii=False, default=str))
        return
    _console().print(tools_table(registry))


# ---------------------------------------------------------------------------------------------
# agent kb


@click.group("kb", context_settings=CONTEXT)
def kb_command_group() -> None:
    """The knowledge base behind SEARCH and LOAD (SQLite FTS5; set AGENT_KB to use another file).

    \b
    Examples:
      agent kb add notes/ README.md
      agent kb list
      agent kb search "capital of France"
      agent kb remove 12 notes/old.md
    """


@kb_command_group.command("add", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--max-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_BYTES, show_default=True,
              help="Skip (and list) files larger than this many bytes.")
def kb_add(paths: tuple[Path, ...], max_bytes: int) -> None:
    """Index text and markdown files (directories recursively); adding a file again updates it.

    All files of one call are stored in one transaction: an error leaves the knowledge base as it
    was. Inside a folder, symbolic links that lead out of it are not followed. Files that are not
    read (links out of the folder, unreadable, over --max-bytes, not UTF-8) are listed on stderr
    with the reason and the exit status is 1; the other files are indexed.

    \b
    Examples:
      agent kb add README.md
      agent kb add ~/notes docs/guide.md
      agent kb add --max-bytes 5000000 big-manual.md
    """
    try:
        result = kb.index_paths(paths, max_bytes=max_bytes)
    except kb.KBError as exc:
        raise click.ClickException(printable(str(exc))) from exc
    for doc in result.docs:
        click.echo(printable(f"[{doc.id}] {doc.title}"))
    for skipped in result.skipped:
        click.echo(printable(f"skipped {skipped.path}: {skipped.reason}"), err=True)
    count = len(result.docs)
    summary = f"indexed {count} document{'s' if count != 1 else ''} into {kb.kb_path()}"
    if result.skipped:
        summary += f"; skipped {len(result.skipped)} path{'s' if len(result.skipped) != 1 else ''} (listed above)"
    click.echo(printable(summary))
    if result.skipped:
        sys.exit(1)


@kb_command_group.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (id, title, chars, path).")
def kb_list(as_json: bool) -> None:
    """List the stored documents: id, size in characters, title, and the file each came from (a table on a
    terminal, tab-separated lines with a header when piped).

    \b
    Examples:
      agent kb list
      agent kb list | grep notes/
      agent kb list --json
    """
    try:
        docs = kb.list_docs()
    except kb.KBError as exc:
        raise click.ClickException(printable(str(exc))) from exc
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(doc) for doc in docs], ensure_ascii=False))
    elif not sys.stdout.isatty():
        click.echo(kb_tsv(docs))
    else:
        _console().print(kb_table(docs))


@kb_command_group.command("remove", context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="ID_OR_PATH...")
def kb_remove(refs: tuple[str, ...]) -> None:
    """Remove documents, named by id (see `agent kb list`) or by the file they were added from.

    All in one transaction: if any ID_OR_PATH names no document, they are listed, nothing is removed and
    the exit status is 1.

    \b
    Examples:
      agent kb remove 12
      agent kb remove notes/old.md 14 15
    """
    try:
        removed = kb.remove_docs(refs)
    except kb.KBError as exc:
        raise click.ClickException(printable(str(exc))) from exc
    for doc in removed:
        click.echo(printable(f"removed [{doc.id}] {doc.title}"))


@kb_command_group.command("search", context_settings=CONTEXT)
@click.argument("text")
def kb_search(text: str) -> None:
    """Show what SEARCH("TEXT") would return to the model.

    \b
    Examples:
      agent kb search "capital of France"
    """
    try:
        click.echo(printable(search(text)))
    except kb.KBError as exc:
        raise click.ClickException(printable(str(exc))) from exc


# ---------------------------------------------------------------------------------------------
# agent grammar


@click.group("grammar", context_settings=CONTEXT)
def grammar_command_group() -> None:
    """Grammars for --grammar (Lark syntax, as read by llguidance); shipped ones go by name.

    \b
    Examples:
      agent grammar list
      agent grammar check json
      agent grammar check my.lark
    """


@grammar_command_group.command("list", context_settings=CONTEXT)
def grammar_list() -> None:
    """The grammars shipped with agent, by name, with what each is for (use one with --grammar NAME).

    \b
    Examples:
      agent grammar list
      agent run "Describe a cat as JSON" --grammar json
    """
    names = shipped()
    width = max((len(name) for name in names), default=0)
    for name, path in names.items():
        click.echo(printable(f"{name.ljust(width)}  {description(path)}"))


@grammar_command_group.command("check", context_settings=CONTEXT)
@click.argument("name", metavar="FILE", type=click.Path(dir_okay=False))
def grammar_check(name: str) -> None:
    """Validate a Lark grammar (a file, or a shipped one by name); errors show line and column (exit
    status 1 on error).

    \b
    Examples:
      agent grammar check json
      agent grammar check my.lark && agent run "..." --grammar my.lark
    """
    # llguidance and lark: only for this command
    from agent.grammar.checking import check_grammar, read_grammar_file

    file = resolve_grammar(name)
    if is_template(file):  # the tool-call protocol's template: not a user grammar
        click.echo(printable(f"{name}: {TEMPLATE_NOTE}"))
        return
    try:
        text = read_grammar_file(file)
    except GrammarError as exc:
        raise click.ClickException(printable(str(exc))) from None
    issues = check_grammar(text, lark_compat=True)
    errors = [i for i in issues if i.severity == "error"]
    for issue in issues:  # engine messages may quote the grammar's own text
        click.echo(printable(f"{file}:{issue}"), err=issue.severity == "error")
    if errors:
        sys.exit(1)
    click.echo(f"{file}: ok")
