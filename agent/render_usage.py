"""What an answer cost, as the REPL shows it: the line after each answer and `/tokens`.

The line after an answer: the search's summary (strategy, candidates, passes, best score) or the
tool calls, then new tokens, tokens per second and how full the model's context is. `/tokens` adds
up the turns answered in this REPL; `/tokens TEXT` shows how the model's tokenizer cuts TEXT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from agent.render import one_line, plain, summary_line

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from agent.turn_result import TurnResult


def rate(tokens: int, seconds: float) -> str:
    """Tokens per second, `-` when no time was measured."""
    return f"{tokens / seconds:.1f} tok/s" if seconds > 0 else "- tok/s"


def answer_line(result: TurnResult) -> str:
    """The dim line after an answer: `12 tokens in 0.40s · 30.0 tok/s · context 248/512 tokens` (the search's
    summary first for a strategy that explores branches; the tool the router chose, when it did)."""
    parts = []
    if result.search is not None:
        parts.append(summary_line(result.search))
        parts.append(f"{result.new_tokens} tokens")
    else:
        calls = f", {len(result.tool_calls)} tool call(s)" if result.tool_calls else ""
        parts.append(f"{result.new_tokens} tokens in {result.seconds:.2f}s{calls}")
    parts.append(rate(result.new_tokens, result.seconds))
    if result.tool_route is not None:  # the router, not the model's first tokens, chose the tool
        parts.append(f"tool {result.tool_route['tool']} chosen by the router")
    if result.context_limit:
        parts.append(f"context {result.context_used}/{result.context_limit} tokens")
    return " · ".join(parts)


@dataclass
class Spent:
    """One answer given in this REPL, for `/tokens` (undone ones stay: their tokens were spent)."""

    turn: int
    result: TurnResult
    undone: bool = False


def usage_table(spent: Sequence[Spent]) -> Table:
    """`/tokens`: per answer the prompt tokens (and how many came from the KV cache), new tokens, forward
    passes, seconds and tokens per second, then the totals."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("turn", "prompt", "reused", "new", "passes", "seconds", "speed", ""):
        table.add_column(column, justify="left" if column in ("turn", "") else "right")
    for row in spent:
        r = row.result
        table.add_row(str(row.turn), str(r.prompt_tokens), str(r.reused_prompt_tokens), str(r.new_tokens),
                      str(r.forward_passes), f"{r.seconds:.2f}", rate(r.new_tokens, r.seconds),
                      "undone" if row.undone else ("interrupted" if r.interrupted else ""))
    totals = [sum(getattr(row.result, name) for row in spent)
              for name in ("prompt_tokens", "reused_prompt_tokens", "new_tokens", "forward_passes", "seconds")]
    table.add_row(Text("all", style="bold"), *(str(value) for value in totals[:4]), f"{totals[4]:.2f}",
                  rate(int(totals[2]), float(totals[4])), "")
    return table


def token_pieces(tokenizer: PreTrainedTokenizerBase, text: str) -> Text:
    """`/tokens TEXT`: the count, then each token id with the text it stands for."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    lines = [f"{len(ids)} token{'' if len(ids) == 1 else 's'}"]
    lines += [f"  {token_id:>7}  {one_line(tokenizer.decode([token_id]), 40)!r}" for token_id in ids]
    return plain("\n".join(lines))
