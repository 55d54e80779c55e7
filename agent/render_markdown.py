"""Answers drawn as Markdown (rich) while they stream: redrawn in place, final when the answer ends.

On a terminal the answer is redrawn at most ten times a second (a `rich.live.Live` area) and once
more, complete, when it ends; to a pipe or a file rich draws only that last, complete form. Model
text reaches rich only through `printable` (control characters shown as symbols), and links are
drawn as their text and address (no terminal hyperlinks a model could aim anywhere).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown

from agent.safe_text import printable

REDRAW_SECONDS = 0.1  # a redraw parses the whole answer again: at most ten a second


def markdown(text: str) -> Markdown:
    """An answer as rich Markdown: controls made printable, links not turned into hyperlinks."""
    return Markdown(printable(text), hyperlinks=False)


class MarkdownStream:
    """Collects the pieces of one answer and draws them as Markdown in a live area.

    `pause()` ends the area (what is drawn stays on the screen) so a question can be asked below it
    (the side-effect confirmation); the text after it is drawn as a new block.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.text = ""  # the part of the answer in the current block
        self.live: Live | None = None
        self.drawn_at = 0.0

    def write(self, piece: str) -> None:
        self.text += piece
        if self.live is None:
            # visible: an answer taller than the screen scrolls instead of being cut to its height
            self.live = Live(markdown(self.text), console=self.console, auto_refresh=False,
                             vertical_overflow="visible")
            self.live.start()
        now = time.monotonic()
        if now - self.drawn_at >= REDRAW_SECONDS:
            self.live.update(markdown(self.text), refresh=True)
            self.drawn_at = now

    def pause(self) -> None:
        """Draw the block as it is and end it (the next piece starts a new one)."""
        if self.live is not None:
            self.live.update(markdown(self.text), refresh=True)
            self.live.stop()
            self.live = None
        self.text = ""

    def end(self) -> None:
        """The end of the answer: its final form stays on the screen."""
        self.pause()
