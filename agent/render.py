"""Everything rich draws: answers' summary lines, /alts, /tree, tool calls and stored sessions."""

from __future__ import annotations

from agent.decoding.results import SearchResult


def summary_line(result: SearchResult) -> str:
    """One line after each searched answer: candidates, passes, best score, refinement gain."""
    plural = "" if len(result.candidates) == 1 else "s"
    backward = f" + {result.backward_passes} backward" if result.backward_passes else ""
    parts = [
        f"{result.strategy or result.best.strategy}: {len(result.candidates)} candidate{plural}",
        f"{result.forward_passes} forward{backward} passes",
        f"best score {result.best.score:.3f}/token",
    ]
    ref = result.refinement or {}
    if ref.get("tried"):
        parts.append(f"refined {ref['improved']}/{ref['tried']} improved, mean gain {ref['mean_gain']:+.3f}")
    parts.append(f"{result.seconds:.2f}s")
    return " · ".join(parts)


def _one_line(text: str, width: int = 80) -> str:
    flat = text.replace("\n", "⏎ ")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render_alts(result: SearchResult):  # -> rich.table.Table
    """The candidates of the last answer as a table, best first (for `/alts`)."""
    from rich.table import Table

    table = Table(title=f"candidates ({result.strategy or result.best.strategy})", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("how")
    table.add_column("text")
    for index, cand in enumerate(result.candidates):
        how = cand.strategy
        if cand.refined:
            verdict = "accepted" if cand.accepted else "rejected"
            how += f" (refined from #{cand.parent}, {cand.score_before:.3f}→{cand.score_after:.3f}, {verdict})"
        flags = " [empty]" if cand.empty else (" [loop]" if cand.degenerate else "")
        marker = "*" if cand is result.best else ""
        table.add_row(f"{marker}{index}", f"{cand.score:.3f}", str(cand.new_tokens), how + flags,
                      _one_line(cand.text))
    return table


def render_tree(result: SearchResult, max_nodes: int = 200, max_children: int = 6):  # -> rich.tree.Tree
    """The explored search tree (for `/tree`): each branch's text, mean log-prob and fate.

    Chains of single children are drawn as one line; the best answer's path is bold green, dead
    ends red; at most max_children children per node (the best) and max_nodes lines in all.
    """
    from rich.text import Text
    from rich.tree import Tree

    root = result.tree
    if root is None:
        return Text(f"no search tree: strategy {result.strategy or result.best.strategy} explores none")
    tokenizer = getattr(root, "tokenizer", None)
    best_path = set()
    node_id = result.best.node_id
    by_id = {}
    stack = [root]
    while stack:
        node = stack.pop()
        by_id[node.id] = node
        stack.extend(node.children.values())
    while node_id is not None and node_id in by_id:
        best_path.add(node_id)
        parent = by_id[node_id].parent
        node_id = parent.id if parent is not None else None
    shown = 0

    tree = Tree(Text(f"prompt ({result.forward_passes} passes, KV reuse {result.kv_reuse_ratio:.2f})"))

    def add(branch, node) -> None:
        nonlocal shown
        # Collapse single-child chains into one line so deep trees stay readable.
        children = sorted(node.children.values(), key=lambda n: (n.id not in best_path, -n.mean))
        for index, child in enumerate(children):
            if shown >= max_nodes:
                branch.add(Text("…", style="dim"))
                return
            if index >= max_children:
                branch.add(Text(f"… {len(children) - index} more", style="dim"))
                break
            chain = [child]
            while len(chain[-1].children) == 1 and chain[-1].status != "dead":
                chain.append(next(iter(chain[-1].children.values())))
            last = chain[-1]
            ids = [t for n in chain for t in n.tokens]
            piece = tokenizer.decode(ids, skip_special_tokens=False) if tokenizer else str(ids)
            if last.is_eos:
                piece += "<eos>"
            on_best = last.id in best_path
            style = "bold green" if on_best else ("red" if last.status == "dead" else "")
            text = Text(_one_line(piece, 60) or "·", style=style)
            text.append(f"  {last.mean:.2f}", style="dim")
            if last.status in ("dead", "complete"):
                text.append(f" [{last.status}{': ' + last.reason if last.reason else ''}]", style="dim")
            shown += 1
            add(branch.add(text), last)

    add(tree, root)
    return tree
