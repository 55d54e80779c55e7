"""Test helper: a constraint wrapper that scripts the start of a response."""

from __future__ import annotations

import torch

from agent.grammar.constraint import GrammarConstraint


class Script:
    """Forces the response to start with `text` (each token still checked by the constraint)."""

    def __init__(self, inner: GrammarConstraint, text: str) -> None:
        self.inner = inner
        self.todo = text.encode()
        self.pieces = inner.token_bytes

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def allowed_tokens(self) -> torch.Tensor:
        mask = self.inner.allowed_tokens()
        if not self.todo:
            return mask
        fits = torch.tensor([bool(p) and self.todo.startswith(p) for p in self.pieces]
                            + [False] * (mask.numel() - len(self.pieces)))
        narrowed = mask & fits
        assert narrowed.any(), f"the grammar does not allow the script here: {self.todo!r}"
        return narrowed

    def accept(self, token_id: int):
        self.todo = self.todo[len(self.pieces[token_id]):]
        return self.inner.accept(token_id)
