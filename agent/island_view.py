"""What the terminal shows of a streamed answer in a model's own tool-call format: the tool result,
which the chat template writes as a new message (`<|im_end|>\\n<|im_start|>user\\n<tool_response>\\n`
... for Qwen), is shown as the protocol's island line `=> result`; everything else passes as it came.

The stored response keeps the template's form (the next turn renders it back through the template);
only the view changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.grammar.islands import format_island
from agent.safe_text import pending_prefix

if TYPE_CHECKING:
    from agent.grammar.native.format import IslandForm


class IslandView:
    """Rewrites a stream of text pieces: `prefix + content + suffix` becomes `\\n=> content\\n`.

    An ending that may begin an island is held back until the next piece tells; an island is held
    until its suffix arrives (it is forced whole, so this is at most one step)."""

    def __init__(self, write: Callable[[str], None], prefix: str, suffix: str, json_content: bool) -> None:
        self.write = write
        self.prefix = prefix
        self.suffix = suffix
        self.json_content = json_content
        self.pending = ""

    def push(self, piece: str) -> None:
        self.pending += piece
        while True:
            start = self.pending.find(self.prefix)
            if start < 0:
                held = pending_prefix(self.pending, self.prefix)
                self._emit(self.pending[: len(self.pending) - held])
                self.pending = self.pending[len(self.pending) - held:]
                return
            end = self.pending.find(self.suffix, start + len(self.prefix))
            if end < 0:
                self._emit(self.pending[:start])
                self.pending = self.pending[start:]
                return
            self._emit(self.pending[:start] + format_island(self._content(self.pending[start + len(self.prefix):end])))
            self.pending = self.pending[end + len(self.suffix):]

    def flush(self) -> None:
        """The end of the answer: what was held back is shown as it is."""
        self._emit(self.pending)
        self.pending = ""

    def _content(self, body: str) -> str:
        if not self.json_content:
            return body
        try:
            value = json.loads(body)
        except ValueError:
            return body
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    def _emit(self, text: str) -> None:
        if text:
            self.write(text)


def streamed(write: Callable[[str], None], form: IslandForm | None) -> tuple[Callable[[str], None], Callable[[], None]]:
    """The `on_token` to give a turn, and what to call when it ends: `write` as it is for the protocol,
    through an IslandView for a native format."""
    if form is None:
        return write, lambda: None
    view = IslandView(write, form.prefix, form.suffix, form.json_content)
    return view.push, view.flush
