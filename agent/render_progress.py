"""The live line while a search runs (REPL and `agent run` on a terminal): counters and the best so far.

    tree · pass 37/128 · 3 answers · best -0.42 · 2.1s │ CALL(calc, expr="1234 * 5678") ...

It is drawn in place by a rich Status (a spinner in front), updated as the search reports
(agent.decoding.progress) and removed when the answer is written.
"""

from __future__ import annotations

from rich.console import Console
from rich.status import Status
from rich.text import Text

from agent.config import DecodeConfig
from agent.decoding.progress import SearchProgress
from agent.decoding.strategies import strategy_for
from agent.render import one_line, plain


def progress_line(progress: SearchProgress, width: int = 80) -> Text:
    """One line: strategy and stage, passes of the budget, answers found, best score, time, the best text."""
    stage = f"{progress.strategy} refining" if progress.stage == "refining" else progress.strategy
    counters = [stage, f"pass {progress.forward_passes}/{progress.budget}",
                f"{progress.candidates} answer{'' if progress.candidates == 1 else 's'}"]
    if progress.best_score is not None:
        counters.append(f"best {progress.best_score:.2f}")
    counters.append(f"{progress.seconds:.1f}s")
    head = " · ".join(counters)
    label = "best so far: " if progress.best_is_complete else "growing: "
    room = max(0, width - len(head) - len(label) - 5)  # the spinner and separators take the rest
    line = Text(head, style="dim")
    if room > 8 and progress.best_text.strip():
        line.append(" │ " + label, style="dim")
        flat = one_line(progress.best_text.strip(), 10**9)
        if not progress.best_is_complete and len(flat) > room:  # a growing branch: its newest end
            flat = "…" + flat[-(room - 1):]
        line.append_text(plain(one_line(flat, room)))
    line.no_wrap = True
    line.overflow = "ellipsis"
    return line


def search_line(console: Console, config: DecodeConfig) -> LiveSearchLine | None:
    """The live line for a turn on `console` (the caller says whether it is a terminal): one for a strategy
    that explores branches, none for greedy and sample (their text itself streams)."""
    if not strategy_for(config.strategy).explores_branches:
        return None
    return LiveSearchLine(console, f"searching: {config.strategy}, up to {config.search_budget} passes "
                                   "(Ctrl-C keeps the best so far)")


class LiveSearchLine:
    """A status line on `console` that each progress report redraws in place; `stop()` removes it."""

    def __init__(self, console: Console, first: str) -> None:
        self.console = console
        self.status: Status | None = console.status(plain(first), spinner="dots")
        self.status.start()

    def show(self, progress: SearchProgress) -> None:
        if self.status is not None:
            self.status.update(progress_line(progress, self.console.width - 2))

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()  # the answer (or a question) takes the line
            self.status = None
