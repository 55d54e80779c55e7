"""One turn's search tree as a self-contained HTML page (no scripts, no fetched files) to look at what the
search did: every stored node is a `<li class="node" data-node=ID>` with its text, mean log-prob and
fate, nested under its parent; the chosen answer's path is marked, dead ends struck through, and each
branch folds (`<details>`). Text is HTML-escaped, so a model's `<script>` is shown, never run.
"""

from __future__ import annotations

from html import escape
from typing import Any

from agent.render import one_line
from agent.safe_text import printable
from agent.sessions.records import StoredTree, StoredTreeNode
from agent.sessions.summary import call_expression, call_outcome

CALL_LINE = 100  # characters of a call and its outcome on a tree line

STYLE = """
body { font: 14px/1.4 ui-monospace, Menlo, Consolas, monospace; margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; } .summary { color: #555; margin-bottom: 1em; }
ul { list-style: none; padding-left: 1.2em; border-left: 1px dotted #bbb; margin: 0; }
li.node > details > summary, li.node > span.leaf { cursor: default; white-space: pre-wrap; }
.text { background: #f3f3f3; padding: 0 .2em; } .score { color: #777; margin-left: .6em; }
.fate { color: #777; margin-left: .4em; } .call { color: #8a5a00; margin-left: .6em; }
.best > details > summary .text, .best > span.leaf .text
{ background: #d7f5d7; font-weight: bold; } .dead .text { text-decoration: line-through; color: #a33; }
"""


def call_summary(call: dict[str, Any] | None) -> str:
    """`calc(expr='2+3') -> 5` (or `-> error: ...`) for a node's tool call, as `sessions show` writes a call;
    "" for none."""
    if not call:
        return ""
    return one_line(f"{call_expression(call)} -> {call_outcome(call, CALL_LINE)}", CALL_LINE)


def _label(node: StoredTreeNode) -> str:
    text = escape(printable(node["text"]) + ("<eos>" if node["eos"] else "")) or "·"
    score = "-" if node["mean"] is None else f"{node['mean']:.3f}"
    fate = node["status"] + (f": {node['reason']}" if node["reason"] else "")
    call = call_summary(node["call"])
    return (f'<span class="text">{text}</span><span class="score">{score}</span>'
            f'<span class="fate">[{escape(printable(fate))}]</span>'
            + (f'<span class="call">{escape(printable(call))}</span>' if call else ""))


def tree_html(tree: StoredTree, *, title: str) -> str:
    """The page: a heading, the counts, then the nested tree (children best first)."""
    children: dict[int | None, list[StoredTreeNode]] = {}
    for node in tree["nodes"]:
        children.setdefault(node["parent"], []).append(node)
    by_id = {node["id"]: node for node in tree["nodes"]}
    best: set[int] = set()
    at = tree["best_node"]
    while at is not None and at in by_id:
        best.add(at)
        at = by_id[at]["parent"]
    def ordered(parent: int | None) -> list[StoredTreeNode]:
        return sorted(children.get(parent, []), key=lambda n: (n["id"] not in best,
                                                                -(n["mean"] if n["mean"] is not None else -1e9)))

    # a stack, not recursion: a search tree is as deep as an answer is long (thousands of tokens). Items:
    # closing markup (str), a node to open, or ("list", parent): the list of that parent's children
    out: list[str] = []
    stack: list[str | StoredTreeNode | tuple[str, int | None]] = [("list", None)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, tuple):
            out.append("<ul>")
            stack.append("</ul>")
            stack.extend(reversed(ordered(item[1])))
        else:
            classes = "node" + (" best" if item["id"] in best else "") + (" dead" if item["status"] == "dead" else "")
            out.append(f'<li class="{classes}" data-node="{item["id"]}">')
            if item["id"] in children:
                out.append(f"<details{' open' if item['id'] in best else ''}><summary>{_label(item)}</summary>")
                stack += ["</details></li>", ("list", item["id"])]
            else:
                out.append(f'<span class="leaf">{_label(item)}</span></li>')
    dead = sum(1 for node in tree["nodes"] if node["status"] == "dead")
    complete = sum(1 for node in tree["nodes"] if node["status"] == "complete")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(printable(title))}</title><style>{STYLE}</style></head><body>"
            f"<h1>{escape(printable(title))}</h1>"
            f'<p class="summary">{len(tree["nodes"])} nodes · {complete} complete · {dead} dead · the chosen '
            "answer's path in green</p>" + "".join(out) + "</body></html>\n")
