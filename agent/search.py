"""Search strategies behind one call: beam, best-of-N, tree and tree+grad (greedy and sample wrap decode).

Every strategy returns a `SearchResult` whose candidates are ranked by the one shared score of
`agent.scoring`; the REPL prints `summary_line`, `/alts` shows `render_alts`, `/tree` `render_tree`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import DecodeConfig
from agent.constraint import ResponseConstraint, ToolCallRecord
from agent.model_runtime import LoadedModel

SEARCH_STRATEGIES = ("greedy", "sample", "beam", "best-of-n", "tree", "tree+grad")


@dataclass
class Candidate:
    """One complete response a strategy found, with its exact score and where it came from."""

    text: str
    token_ids: list[int]
    island_mask: list[bool]
    logprobs: list[float]  # log p of each token; 0.0 at islands
    score: float  # agent.scoring value: mean log-prob per model token, guards applied
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    strategy: str = ""
    parent: int | None = None  # index (in the result's candidates) of the candidate this was refined from
    refined: bool = False
    score_before: float | None = None
    score_after: float | None = None
    grad_steps: int = 0
    accepted: bool | None = None
    finish_reason: str = "length"  # "eos" | "grammar" | "stop" | "length" | "budget" | "interrupted"
    eos_logprob: float | None = None  # log p(EOS) when the model ended the response
    empty: bool = False
    degenerate: bool = False
    node_id: int | None = None  # the tree node this candidate ends at (tree strategies)
    constraint: Any = None  # the branch's grammar state (to run a deferred side-effect call)

    @property
    def new_tokens(self) -> int:
        return sum(1 for island in self.island_mask if not island)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record for `--json` and the session store."""
        return {
            "text": self.text,
            "score": round(self.score, 6),
            "token_count": self.new_tokens,
            "strategy": self.strategy,
            "parent": self.parent,
            "refined": self.refined,
            "score_before": None if self.score_before is None else round(self.score_before, 6),
            "score_after": None if self.score_after is None else round(self.score_after, 6),
            "grad_steps": self.grad_steps,
            "accepted": self.accepted,
            "finish_reason": self.finish_reason,
        }


def empty_refinement() -> dict[str, Any]:
    return {"tried": 0, "improved": 0, "mean_gain": 0.0}


@dataclass
class SearchResult:
    """What a search found: the best candidate, the others (best first) and what it cost."""

    best: Candidate
    candidates: list[Candidate]
    forward_passes: int = 0
    backward_passes: int = 0
    refinement: dict[str, Any] = field(default_factory=empty_refinement)
    tree: Any = None  # agent.tree_search.Node (root) for /tree, or None
    kv_reuse_ratio: float = 1.0  # model token evaluations / tree nodes (1.0 = no prefix recomputed)
    seconds: float = 0.0
    strategy: str = ""
    token_evaluations: int = 0  # response tokens run through the model (batch rows included)

    @property
    def text(self) -> str:
        return self.best.text

    @property
    def token_ids(self) -> list[int]:
        return self.best.token_ids

    @property
    def island_mask(self) -> list[bool]:
        return self.best.island_mask

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return self.best.tool_calls

    @property
    def finish_reason(self) -> str:
        return self.best.finish_reason

    @property
    def new_tokens(self) -> int:
        return self.best.new_tokens

    @property
    def score(self) -> float:
        return self.best.score


def rank(candidates: list[Candidate]) -> list[Candidate]:
    """Best first by the shared score; ties keep their order (stable)."""
    return sorted(candidates, key=lambda c: -c.score)


def search_response(
    lm: LoadedModel,
    prompt_ids: list[int],
    config: DecodeConfig,
    *,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Run the configured strategy on one prompt and return its ranked candidates."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    started = time.perf_counter()
    strategy = config.strategy
    if strategy in ("greedy", "sample"):
        result = _single(lm, prompt_ids, config, make_constraint, should_stop)
    elif strategy == "beam":
        from agent.beam_search import beam_search

        result = beam_search(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop)
    elif strategy == "best-of-n":
        from agent.best_of_n import best_of_n

        result = best_of_n(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop)
    elif strategy in ("tree", "tree+grad"):
        from agent.tree_search import tree_search

        result = tree_search(lm, prompt_ids, config, make_constraint=make_constraint, should_stop=should_stop)
        if strategy == "tree+grad" and result.best.finish_reason != "interrupted":
            from agent.refine import refine_result

            result = refine_result(lm, prompt_ids, config, result, make_constraint=make_constraint,
                                   should_stop=should_stop)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(SEARCH_STRATEGIES)}")
    result.strategy = strategy
    _run_deferred_call(lm, prompt_ids, config, result, should_stop)
    result.seconds = time.perf_counter() - started
    return result


def _single(lm: LoadedModel, prompt_ids: list[int], config: DecodeConfig,
            make_constraint: Callable[[], ResponseConstraint | None] | None,
            should_stop: Callable[[], bool] | None) -> SearchResult:
    """greedy / sample through the plain decode loop, scored like every other strategy."""
    from agent.decode import decode
    from agent.scoring import score_parts

    constraint = make_constraint() if make_constraint is not None else None
    out = decode(lm, prompt_ids, config, constraint=constraint, should_stop=should_stop)
    parts = score_parts(out.logprobs, out.island_mask, out.token_ids, eos_logprob=out.eos_logprob, text=out.text)
    cand = Candidate(text=out.text, token_ids=out.token_ids, island_mask=out.island_mask, logprobs=out.logprobs,
                     score=parts.value, tool_calls=out.tool_calls, strategy=config.strategy,
                     finish_reason=out.finish_reason, eos_logprob=out.eos_logprob, empty=parts.empty,
                     degenerate=parts.degenerate, constraint=constraint)
    return SearchResult(best=cand, candidates=[cand], forward_passes=out.forward_passes,
                        token_evaluations=out.new_tokens)


def _run_deferred_call(lm: LoadedModel, prompt_ids: list[int], config: DecodeConfig, result: SearchResult,
                       should_stop: Callable[[], bool] | None) -> None:
    """Side-effect tools wait for the chosen path: run the best branch's pending call, then finish it.

    The constraint (agent.grammar_constraint) stops a branch at a side-effect call when
    defer_side_effects is on; once the branch is chosen the call runs (after confirmation, inside
    run_pending) and the response continues greedily from its island with the plain decode loop.
    """
    best = result.best
    constraint = best.constraint
    if constraint is None or getattr(constraint, "pending_call", None) is None:
        return
    from agent.decode import decode
    from agent.scoring import score_parts

    pending = constraint.pending_call
    step = constraint.run_pending()
    token_ids, islands, logprobs = list(best.token_ids), list(best.island_mask), list(best.logprobs)
    # The branch recorded the call when it paused (not run yet); the executed record replaces it.
    record = getattr(pending, "record", None)
    tool_calls = [c for c in best.tool_calls if c is not record and not (
        c.result is None and c.error is None and c.call_text and c.call_text == getattr(pending, "call_text", None))]
    if step is not None:
        if step.tool_call is not None:
            tool_calls.append(step.tool_call)
        token_ids += list(step.forced_token_ids)
        islands += [step.forced_is_island] * len(step.forced_token_ids)
        logprobs += [0.0] * len(step.forced_token_ids)
    left = config.max_new_tokens - sum(1 for i in islands if not i)
    if left > 0 and not constraint.is_finished():
        rest = decode(lm, list(prompt_ids) + token_ids, config.replace(strategy="greedy", max_new_tokens=left),
                      constraint=constraint, should_stop=should_stop)
        token_ids += rest.token_ids
        islands += rest.island_mask
        logprobs += rest.logprobs
        tool_calls += rest.tool_calls
        result.forward_passes += rest.forward_passes
        best.finish_reason = rest.finish_reason
    else:
        best.finish_reason = "grammar" if constraint.is_finished() else "length"
    text = lm.tokenizer.decode(token_ids, skip_special_tokens=True)
    parts = score_parts(logprobs, islands, token_ids, text=text)
    best.token_ids, best.island_mask, best.logprobs, best.tool_calls = token_ids, islands, logprobs, tool_calls
    best.text, best.score, best.eos_logprob = text, parts.value, None


# -- what the REPL shows ---------------------------------------------------------------------------

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
