"""The corpus's data: a dialogue is a system prompt and exchanges; a response is segments.

A segment is (text, is_island): the model's own text, or a hard island the shell writes after a
call's `)` (formatted by `agent.grammar.protocol.format_island`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

Segment = tuple[str, bool]  # (text, is_island)


@dataclass
class Exchange:
    """One user message and the assistant's response as segments; `meta` says what was asked."""

    user: str
    segments: list[Segment]
    meta: dict = field(default_factory=dict)

    @property
    def response(self) -> str:
        return "".join(text for text, _ in self.segments)


@dataclass
class Dialogue:
    system: str
    exchanges: list[Exchange]

    def messages(self) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system}]
        for ex in self.exchanges:
            out.append({"role": "user", "content": ex.user})
            out.append({"role": "assistant", "content": ex.response})
        return out

    def to_json(self) -> str:
        return json.dumps({"system": self.system, "exchanges": [
            {"user": e.user, "segments": e.segments, "meta": e.meta} for e in self.exchanges]})
