"""Answers drawn as Markdown (rich) while they stream: redrawn in place, final when the answer ends.

On a terminal the answer is redrawn at most ten times a second (a `rich.live.Live` area) and once
more, complete, when it ends; to a pipe or a file rich draws only that last, complete form. Model
text reaches rich only through `printable` (control characters shown as symbols), and links are
drawn as their text and address (no terminal hyperlinks a model could aim anywhere).

Tool calls and their results are not Markdown: a line that starts a call (`CALL(`, `SEARCH(`,
`LOAD(`, or a tag such as `<tool_call>`) or an island (`=> `) is drawn as it is, styled as
`agent sessions show` styles them, so `expr="2*3*4"` keeps its asterisks and a tag is not dropped as
HTML. Every line break of the prose is kept (as chat windows do), except inside code fences.
"""

from __future__ import annotations

import re
import time

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

from agent.render import STYLE
from agent.safe_text import printable

REDRAW_SECONDS = 0.1  # a redraw parses the whole answer again: at most ten a second


TOOL_LINE = re.compile(r"^(?:(?:CALL|SEARCH|LOAD)\(|</?[A-Za-z_|][^>\n]*>|\[TOOL_CALLS\]|<\|python_tag\|>)")
ISLAND_LINE = re.compile(r"^=> ")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _prose(lines: list[str]) -> Markdown:
    """Markdown with every line break kept outside code fences (two trailing spaces: a hard break)."""
    kept, fenced = [], False
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        kept.append(line if fenced or not line.strip() or FENCE.match(line) else line + "  ")
    return Markdown(printable("\n".join(kept)), hyperlinks=False)


def markdown(text: str) -> RenderableType:
    """An answer drawn as Markdown, its tool-call and island lines as they are (controls made printable,
    links not turned into hyperlinks)."""
    parts: list[RenderableType] = []
    prose: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        kind = None if fenced else ("island" if ISLAND_LINE.match(line) else "call" if TOOL_LINE.match(line) else None)
        if kind is None:
            prose.append(line)
            continue
        if any(p.strip() for p in prose):
            parts.append(_prose(prose))
        prose = []
        parts.append(Text(printable(line), style=STYLE[kind]))
    if any(p.strip() for p in prose):
        parts.append(_prose(prose))
    return Group(*parts)


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
