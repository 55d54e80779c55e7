"""`agent sessions tree ID [TURN] [--html FILE]`: the search tree stored with a turn, in the terminal or as a
self-contained HTML page (the same drawing as the REPL's `/tree TURN`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from agent.cli.options import CONTEXT
from agent.cli.sessions import db_option, opened
from agent.render_tree import render_stored_tree
from agent.repl_save import save_new_file
from agent.safe_text import printable
from agent.tree_html import tree_html


@click.command("tree", context_settings=CONTEXT)
@click.argument("session_id", metavar="ID")
@click.argument("turn", type=int, required=False)
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a self-contained HTML page of the tree to this file (never over an existing one).")
@db_option
def sessions_tree(session_id: str, turn: int | None, html_file: Path | None, db: Path | None) -> None:
    """Draw the search tree stored with TURN of session ID (default: its last turn): each branch's text,
    mean log-prob and fate, the tool calls made on it, the chosen answer's path marked. Only strategies
    that explore branches (beam, best-of-n, tree, tree+grad, mcmc) store one.

    \b
    Examples:
      agent sessions tree 3f2a9c
      agent sessions tree 3f2a9c 2 --html tree.html
    """
    with opened(db) as store:
        full_id = store.resolve_id(session_id)
        number = store.next_turn(full_id) - 1 if turn is None else turn
        tree = store.search_tree(full_id, number)
    if tree is None:
        raise click.ClickException(printable(f"no search tree stored for turn {number} of session {full_id} "
                                             "(greedy and sample explore none)"))
    if html_file is None:
        # sys.stdout at call time: CliRunner swaps it
        Console(file=sys.stdout, highlight=False, soft_wrap=True).print(render_stored_tree(tree))
        return
    try:
        save_new_file(html_file.expanduser(), tree_html(tree, title=f"search tree of turn {number}, session {full_id}"))
    except ValueError as exc:  # it exists, or cannot be created
        raise click.ClickException(printable(str(exc))) from None
    click.echo(printable(f"wrote the {len(tree['nodes'])} nodes of turn {number}'s tree to {html_file}"))
