"""A search tree drawn for `/tree`: each branch's text, mean log-prob, fate and tool calls; the chosen
answer's path bold green, dead ends red; chains of single children on one line; at most `max_children`
children per node (the best) and `max_nodes` lines. One drawing for both sources: a stored tree
(`SessionStore.search_tree`) as it is, and the last answer's live tree turned into the same record
(agent.search_tree_record) first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from rich.tree import Tree

from agent.render import one_line, plain
from agent.safe_text import printable
from agent.search_tree_record import tree_record
from agent.sessions.records import StoredTree, StoredTreeNode
from agent.tree_html import call_summary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from agent.decoding.results import SearchResult


def render_tree(result: SearchResult, tokenizer: PreTrainedTokenizerBase, max_nodes: int = 200,
                max_children: int = 6) -> Tree | Text:
    """The last answer's explored tree, headed by its passes and KV reuse; a line saying so when the
    strategy explores none."""
    record = tree_record(result, tokenizer)
    if record is None:
        return plain(f"no search tree: strategy {result.strategy or result.best.strategy} explores none")
    title = f"prompt ({result.forward_passes} passes, KV reuse {result.kv_reuse_ratio:.2f})"
    stored = StoredTree(turn=0, best_node=record["best_node"], nodes=record["nodes"])
    return render_stored_tree(stored, max_nodes, max_children, title=title)


def render_stored_tree(tree: StoredTree, max_nodes: int = 200, max_children: int = 6,
                       title: str | None = None) -> Tree:
    nodes = {node["id"]: node for node in tree["nodes"]}
    children: dict[int | None, list[StoredTreeNode]] = {}
    for node in tree["nodes"]:
        children.setdefault(node["parent"], []).append(node)
    best_path: set[int] = set()
    at = tree["best_node"]
    while at is not None and at in nodes:
        best_path.add(at)
        at = nodes[at]["parent"]
    drawn = Tree(Text(title or f"turn {tree['turn']}: {len(nodes)} nodes stored"))
    shown = 0

    def score(node: StoredTreeNode) -> float:
        return node["mean"] if node["mean"] is not None else float("-inf")

    def add(branch: Tree, parent: int | None) -> None:
        nonlocal shown
        ordered = sorted(children.get(parent, []), key=lambda n: (n["id"] not in best_path, -score(n)))
        for index, child in enumerate(ordered):
            if shown >= max_nodes:
                branch.add(Text("…", style="dim"))
                return
            if index >= max_children:
                branch.add(Text(f"… {len(ordered) - index} more", style="dim"))
                break
            chain = [child]
            while len(children.get(chain[-1]["id"], [])) == 1 and chain[-1]["status"] != "dead":
                chain.append(children[chain[-1]["id"]][0])
            last = chain[-1]
            piece = "".join(n["text"] for n in chain) + ("<eos>" if last["eos"] else "")
            style = "bold green" if last["id"] in best_path else ("red" if last["status"] == "dead" else "")
            line = plain(one_line(piece, 60) or "·", style)
            line.append(f"  {score(last):.2f}" if last["mean"] is not None else "  -", style="dim")
            calls = [call_summary(n["call"]) for n in chain if n["call"]]
            if calls:
                line.append(printable(" [call " + "; ".join(calls) + "]"), style="yellow")
            if last["status"] in ("dead", "complete"):
                line.append(printable(f" [{last['status']}{': ' + last['reason'] if last['reason'] else ''}]"),
                            style="dim")
            shown += 1
            add(branch.add(line), last["id"])

    add(drawn, None)
    return drawn
