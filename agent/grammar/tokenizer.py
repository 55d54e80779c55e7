"""llguidance's view of a Hugging Face tokenizer, the byte tables the constraint needs, and its caches.

Built once per (tokenizer, logits width): 0.3 s for the test vocabulary, ~7 s for 151k tokens.
The grammar side's caches, each named for what it holds, are `TOKENIZER_INFOS` (per tokenizer)
and, on each TokenizerInfo, `compiled_matchers` (per grammar) and `free_text_masks` (per grammar
and free-text state); they share `BoundedCache`, as does `agent.grammar.constraint.TURN_GRAMMARS`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import llguidance.hf
import numpy as np
from llguidance import LLMatcher, LLTokenizer

from agent.grammar.errors import GrammarError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

K = TypeVar("K")
V = TypeVar("V")

# A token that crosses a call's closing `)` into the island would let the model write part of
# the island itself; inside a call `)` followed by a newline can only be that crossing.
CALL_CROSSING = b")\n"

# What the engine's free-text mask depends on (see agent.grammar.free_text.free_text_state):
# (the text's ending that matters: a partial call opening, an unfinished character or a line start
# with what follows it; whether the text since the last island is empty).
TextState = tuple[bytes, bool]


class BoundedCache(dict[K, V]):
    """A dict that empties itself when it holds more than `limit` entries and another comes.

    The entries are cheap to rebuild and the working set is small, so clearing beats LRU
    bookkeeping on the per-token path (a lookup is a plain dict lookup).
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> V:
        if len(self) > self.limit:
            self.clear()
        self[key] = value
        return value


@dataclass
class TokenizerInfo:
    """The tokenizer as llguidance sees it, with per-token byte tables as int32 bitmask words."""

    ll: LLTokenizer
    width: int  # logits width (mask length)
    eos_ids: list[int]
    token_bytes: list[bytes]
    lengths: np.ndarray  # int32 bytes per token (width)
    keep_in_call: np.ndarray  # bitmask words: tokens without `)\n`
    keep_near_end: np.ndarray  # bitmask words: tokens without `(`
    by_bytes: dict[bytes, int]  # the first token id spelling exactly these bytes
    words: int  # int32 words per bitmask
    opens_and_crosses: list[int]  # tokens with both `(` and `)\n`: could open, close and cross at once
    # grammar text -> the compiled matcher before any token (deep-copied for each response)
    compiled_matchers: BoundedCache[str, LLMatcher] = field(default_factory=lambda: BoundedCache(16))
    # grammar text -> {free-text state -> bitmask words}: see agent.grammar.free_text
    free_text_masks: dict[str, BoundedCache[TextState, np.ndarray]] = field(default_factory=dict)

    def encode(self, text: str) -> list[int]:
        """Token ids for forced text, checked to decode back to exactly the same bytes."""
        data = text.encode("utf-8")
        ids = list(self.ll.tokenize_bytes(data))
        if self.ll.decode_bytes(ids) != data:
            ids = list(self.ll.greedy_tokenize(text))
        if self.ll.decode_bytes(ids) != data:
            raise GrammarError(f"the tokenizer cannot represent the island text {text[:60]!r}")
        return ids

    def matcher(self, grammar_text: str) -> LLMatcher:
        """A fresh matcher for this grammar (compiled once, then deep-copied)."""
        compiled = self.compiled_matchers.get(grammar_text)
        if compiled is None:
            compiled = LLMatcher(self.ll, LLMatcher.grammar_from_lark(grammar_text), log_level=0)
            if compiled.is_error():
                raise GrammarError(f"llguidance rejected the grammar: {compiled.get_error()}")
            self.compiled_matchers.put(grammar_text, compiled)
        return compiled.deep_copy()

    def masks_for(self, grammar_text: str) -> BoundedCache[TextState, np.ndarray]:
        """The free-text mask cache of one grammar (4096 states is far more than a grammar has)."""
        cache = self.free_text_masks.get(grammar_text)
        if cache is None:
            cache = self.free_text_masks[grammar_text] = BoundedCache(4096)
        return cache


def bitmask_words(flags: np.ndarray) -> np.ndarray:
    """A bool array as llguidance-style int32 bitmask words (bit i of word i // 32 = token i)."""
    return np.packbits(flags.astype(np.uint8), bitorder="little").view(np.int32).copy()


# Hugging Face tokenizer -> {logits width -> TokenizerInfo}; dropped with the tokenizer.
TOKENIZER_INFOS: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, dict[int, TokenizerInfo]] = (
    weakref.WeakKeyDictionary())


def tokenizer_info(hf_tokenizer: PreTrainedTokenizerBase, width: int,
                   eos_ids: list[int] | set[int]) -> TokenizerInfo:
    """llguidance's view of a Hugging Face tokenizer plus byte tables (cached per tokenizer)."""
    per_width = TOKENIZER_INFOS.setdefault(hf_tokenizer, {})
    info = per_width.get(width)
    if info is not None:
        return info
    eos = sorted(int(e) for e in eos_ids)
    if not eos and hf_tokenizer.eos_token_id is not None:
        eos = [hf_tokenizer.eos_token_id]
    try:
        n_vocab = max(width, len(hf_tokenizer))
        ll = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=n_vocab, eos_token=eos or None)
    except ValueError as exc:
        raise GrammarError(f"grammar-constrained decoding needs a fast (Rust) tokenizer: {exc}") from exc
    n = ll.vocab_size  # >= width: the mask always covers the logits
    token_bytes = [ll.decode_bytes([i]) if not ll.is_special_token(i) else b"" for i in range(n)]
    words = (n + 31) // 32
    lengths = np.zeros(words * 32, dtype=np.int32)
    crossing = np.zeros(words * 32, dtype=np.bool_)
    paren = np.zeros(words * 32, dtype=np.bool_)
    by_bytes: dict[bytes, int] = {}
    both: list[int] = []
    for i, piece in enumerate(token_bytes):
        if not piece:
            continue
        lengths[i] = len(piece)
        crossing[i] = CALL_CROSSING in piece
        paren[i] = b"(" in piece
        if paren[i] and crossing[i]:
            both.append(i)
        by_bytes.setdefault(piece, i)
    info = TokenizerInfo(ll=ll, width=width, eos_ids=eos, token_bytes=token_bytes, lengths=lengths[:width],
                         keep_in_call=bitmask_words(~crossing), keep_near_end=bitmask_words(~paren),
                         by_bytes=by_bytes, words=words, opens_and_crosses=both)
    per_width[width] = info
    return info
