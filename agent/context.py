"""Fitting a conversation into the model's context window.

A model attends to a fixed number of positions (the demo model: 512). Before each turn the prompt
(system prompt, history, the new message) plus the answer's token limit must fit in it; past it a
model's answers collapse. `fit_prompt` makes it fit, oldest first: the tool islands (`=> ...` lines)
of old answers are cut to a short form, then whole old turns are dropped. The system prompt and the
new message are always kept; when even they leave less room than the token limit, the limit of this
turn is lowered, and when they leave almost none the message is refused (`ContextOverflowError`)
before anything is decoded or stored. The history kept in memory and in the store is never changed:
only the prompt of the turn is, so the cross-turn prefix cache simply recomputes from where it differs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.model.chat_format import Message, prompt_token_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from agent.model.runtime import LoadedModel

# tokenizers without a limit report a huge sentinel (1e30) as model_max_length: not a context length
_SENSIBLE_MAX = 10_000_000
# the fewest answer tokens a turn is worth decoding with: below this the message is refused
MIN_ANSWER_TOKENS = 16
# an old island line is cut to this many characters of its result (the answer after it stays whole)
SHORT_ISLAND_CHARS = 24
_ISLAND_LINE = re.compile(r"^=> (.*)$", re.MULTILINE)


class ContextOverflowError(ValueError):
    """A message that cannot fit in the model's context even with the whole history dropped."""


def context_length(lm: LoadedModel) -> int | None:
    """How many positions the model attends to: its config's, else a sensible tokenizer limit; None: unknown."""
    return context_length_of(lm.config, lm.tokenizer)


def context_length_of(config: object, tokenizer: object) -> int | None:
    """`context_length` from a model's config and tokenizer alone (`agent models show`: no weights loaded)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _SENSIBLE_MAX:
        return value
    return None


def split_turns(messages: list[Message]) -> tuple[list[Message], list[list[Message]]]:
    """(the system message or none, the turns): each turn is a user message and what followed it."""
    head = [m for m in messages[:1] if m["role"] == "system"]
    turns: list[list[Message]] = []
    for message in messages[len(head):]:
        if message["role"] == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return head, turns


def shorten_islands(message: Message) -> Message:
    """An old assistant message with each `=> result` line cut to a short form."""
    if message["role"] != "assistant":
        return message

    def cut(match: re.Match[str]) -> str:
        result = match.group(1)
        return match.group(0) if len(result) <= SHORT_ISLAND_CHARS else f"=> {result[:SHORT_ISLAND_CHARS]}..."

    return {**message, "content": _ISLAND_LINE.sub(cut, message["content"])}


@dataclass
class FittedPrompt:
    """The prompt of one turn and what was done to make it fit."""

    prompt_ids: list[int]
    max_new_tokens: int
    notice: str | None = None  # one line saying what was trimmed; None when nothing was


def _flatten(head: list[Message], turns: list[list[Message]], current: Message) -> list[Message]:
    return head + [m for turn in turns for m in turn] + [current]


def fit_prompt(tokenizer: PreTrainedTokenizerBase, history: list[Message], user_text: str,
               max_new_tokens: int, limit: int | None, tools: list[dict[str, Any]] | None = None) -> FittedPrompt:
    """The prompt for `user_text` after `history`, trimmed so prompt + max_new_tokens fit in `limit`.
    tools: JSON schemas the chat template shows (a native tool format); they take room too."""
    current: Message = {"role": "user", "content": user_text}
    ids = prompt_token_ids(tokenizer, history + [current], tools=tools)
    if limit is None or len(ids) + max_new_tokens <= limit:
        return FittedPrompt(ids, max_new_tokens)
    head, turns = split_turns(history)
    bare = prompt_token_ids(tokenizer, head + [current], tools=tools)
    if len(bare) + MIN_ANSWER_TOKENS > limit:
        system = len(prompt_token_ids(tokenizer, head, tools=tools)) if head else 0
        raise ContextOverflowError(
            f"the message is too long for the model's context: with the system prompt ({system} tokens) it makes "
            f"a {len(bare)}-token prompt, and the context is {limit} tokens (at least {MIN_ANSWER_TOKENS} of them "
            "for the answer); shorten it")
    dropped = 0
    shortened = [[shorten_islands(m) for m in turn] for turn in turns]
    ids = prompt_token_ids(tokenizer, _flatten(head, shortened, current), tools=tools)
    while shortened and len(ids) + max_new_tokens > limit:
        shortened.pop(0)
        dropped += 1
        ids = prompt_token_ids(tokenizer, _flatten(head, shortened, current), tools=tools)
    parts = ["tool results of earlier turns shortened"] if shortened else []
    if dropped:
        parts.append(f"the oldest {dropped} of {len(turns)} turn(s) left out")
    room = limit - len(ids)
    if room < max_new_tokens:
        parts.append(f"the answer limited to {room} tokens")
    notice = f"context {limit} tokens: " + ", ".join(parts)
    return FittedPrompt(ids, min(max_new_tokens, room), notice)


@dataclass
class ContextUse:
    """How the context is spent (for `/context`)."""

    limit: int | None
    system_tokens: int
    turn_tokens: list[int]  # each turn of the history, oldest first

    @property
    def used(self) -> int:
        return self.system_tokens + sum(self.turn_tokens)


def context_use(tokenizer: PreTrainedTokenizerBase, messages: list[Message], limit: int | None,
                tools: list[dict[str, Any]] | None = None) -> ContextUse:
    """Tokens of the system prompt (with the tools a native format shows) and of each turn, as the whole
    history would be rendered (untrimmed)."""
    head, turns = split_turns(messages)
    system = len(prompt_token_ids(tokenizer, head, tools=tools)) if head else 0
    sizes: list[int] = []
    before = system
    for index in range(1, len(turns) + 1):
        total = len(prompt_token_ids(tokenizer, head + [m for turn in turns[:index] for m in turn], tools=tools))
        sizes.append(total - before)
        before = total
    return ContextUse(limit, system, sizes)
