"""The model backend: what the decoder needs of a model, whether its weights are here or behind a server.

Two implement it: agent.model.runtime.LoadedModel (transformers in this process; the strategies run
their own KV caches on it for speed) and agent.model.openai_backend.OpenAIBackend (an OpenAI-compatible
completions endpoint such as llama.cpp's server). The decoder asks every backend the same thing, the
next token's log-probabilities after a prefix of token ids with the constraint's mask, and checks
`holds_weights` where a strategy needs more (gradient refinement needs the weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


class BackendCapabilityError(Exception):
    """A strategy needs something this backend cannot give; the message names both."""


class BackendError(Exception):
    """A served model could not be reached or answered with an error; the message says which and where."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status the server answered with, if it answered


class ModelBackend(Protocol):
    tokenizer: PreTrainedTokenizerBase  # the model's own: prompts, masks and text are in its token ids
    model_id: str  # what the session records as the model
    weights_hash: str  # identifies the weights (a served model: the server's URL and model name)
    device: torch.device  # where log-probabilities and masks live
    holds_weights: bool  # the weights are in this process (gradients, every position's logits)
    config: Any  # the model's transformers config (context length, architecture); None where unknown

    @property
    def eos_token_ids(self) -> set[int]: ...

    @property
    def vocab_size(self) -> int: ...

    def next_logprobs(self, prefix: Sequence[int], allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities [vocab_size] of the token after `prefix`, under the whole distribution (not
        renormalised over `allowed`). A backend that sees only the top of the distribution gives -inf for
        the tokens it did not see, but always gives at least one token that `allowed` allows."""
        ...

    def next_logprobs_many(self, requests: Sequence[tuple[Sequence[int], torch.Tensor | None]]) -> list[torch.Tensor]:
        """`next_logprobs` for several (prefix, allowed) pairs, in order; a served model runs them side by side."""
        ...


# What gradient refinement needs of a model (agent.decoding.tree_grad; the CLI refuses it before loading).
GRADIENTS = "the model's weights (gradients through its embeddings)"


def weights_needed(strategy: str, needs: str) -> str:
    """The message for `strategy` asked of a backend without local weights."""
    return (f"strategy {strategy!r} needs {needs}, which a model behind a server does not give; "
            "use greedy, sample, beam, best-of-n, tree or mcmc with --backend openai, or run the model locally")


def require_weights(lm: ModelBackend, strategy: str, needs: str) -> None:
    """A clear error when `strategy` runs on a backend without local weights."""
    if not lm.holds_weights:
        raise BackendCapabilityError(weights_needed(strategy, needs))
