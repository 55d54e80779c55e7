"""GrammarConstraint: token masks from llguidance, tool calls executed as hard islands.

The decoder asks `allowed_tokens()` before each sampled token and calls `accept(token)` after.
Masks come from llguidance's matcher, advanced token by token (never recomputed from scratch).
When a call's closing `)` is accepted (the engine then forces the island opening `\\n=> `), the
call text is parsed with lark, the tool runs through the ToolRunner, and the island
`\\n=> result\\n` is tokenized, consumed by the matcher and handed to the decoder as forced
tokens. The island is one lexeme of the grammar, so nothing inside it can open a call.

Every response must parse, even when the token budget runs out: near the end of the budget
(`set_tokens_left`) no call may be opened that could not be finished, and an open call (or an
unfinished user-grammar response) is steered to its shortest completion.
"""

from __future__ import annotations

import dataclasses
import re
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agent.decoding.constraint import Step
from agent.tooling.records import ToolCallRecord
from agent.grammar.protocol import (DEFAULT_RESULT_LIMIT, ISLAND_PREFIX, ProtocolError, TurnGrammar, build_turn_grammar,
                            value_json)
from agent.tooling.registry import ToolRegistry
from agent.tooling.spec import ToolSpec
from agent.tooling.runner import Confirm, ToolRunner

ISLAND_OPEN = ISLAND_PREFIX.encode()
# A token that crosses a call's closing `)` into the island would let the model write part of
# the island itself; inside a call `)` followed by a newline can only be that crossing.
CALL_CROSSING = b")\n"
FINISH_WINDOW = 40  # start estimating the distance to a complete response this close to the limit
ROLLOUT_LIMIT = 30  # give up estimating after this many steps
# One free token can lengthen the way to a finish by at most this much (a `\\u` escape, a
# multi-byte character started in a string), so steering starts this many tokens early.
FINISH_MARGIN = 8
# Tokens tried (in this order) when steering to a quick finish: close strings, containers, calls;
# the last ones complete a multi-byte UTF-8 character left open by a byte-level token.
FINISH_PIECES = [b'")', b'"', b"}", b"]", b")", b"0", b":", b",", b".", b"f", b"n", b"\n",
                 b"\x90", b"\x80", b"\xa0"]


class GrammarError(ValueError):
    """A grammar is invalid, or a token was refused; says what and where."""


# ---------------------------------------------------------------------------------------------
# Tokenizer side: built once per tokenizer (0.3 s for the test vocabulary, ~7 s for 151k tokens)


@dataclass
class TokenizerInfo:
    ll: Any  # llguidance.LLTokenizer
    width: int  # logits width (mask length)
    eos_ids: list[int]
    token_bytes: list[bytes]
    lengths: np.ndarray  # int32 bytes per token (width)
    keep_in_call: np.ndarray  # int32 bitmask words: tokens without `)\n`
    keep_near_end: np.ndarray  # int32 bitmask words: tokens without `(`
    by_bytes: dict[bytes, int]
    words: int  # int32 words per bitmask
    opens_and_crosses: list[int]  # tokens with both `(` and `)\n`: could open, close and cross at once
    _pristine: dict[str, Any] = field(default_factory=dict)  # grammar text -> fresh LLMatcher
    # grammar text -> {free-text state -> bitmask words}: see GrammarConstraint._text_state
    text_masks: dict[str, dict[tuple[bytes, bool], np.ndarray]] = field(default_factory=dict)

    def encode(self, text: str) -> list[int]:
        """Token ids for forced text, checked to decode back to exactly the same bytes."""
        data = text.encode("utf-8")
        ids = list(self.ll.tokenize_bytes(data))
        if self.ll.decode_bytes(ids) != data:
            ids = list(self.ll.greedy_tokenize(text))
        if self.ll.decode_bytes(ids) != data:
            raise GrammarError(f"the tokenizer cannot represent the island text {text[:60]!r}")
        return ids

    def matcher(self, grammar_text: str) -> Any:
        """A fresh matcher for this grammar (compiled once, then deep-copied)."""
        from llguidance import LLMatcher

        base = self._pristine.get(grammar_text)
        if base is None:
            base = LLMatcher(self.ll, LLMatcher.grammar_from_lark(grammar_text), log_level=0)
            if base.is_error():
                raise GrammarError(f"llguidance rejected the grammar: {base.get_error()}")
            if len(self._pristine) > 16:
                self._pristine.clear()
            self._pristine[grammar_text] = base
        return base.deep_copy()


def _words(flags: np.ndarray) -> np.ndarray:
    """A bool array as llguidance-style int32 bitmask words (bit i of word i // 32 = token i)."""
    return np.packbits(flags.astype(np.uint8), bitorder="little").view(np.int32).copy()


_INFO: "weakref.WeakKeyDictionary[Any, dict[int, TokenizerInfo]]" = weakref.WeakKeyDictionary()


def tokenizer_info(hf_tokenizer: Any, width: int, eos_ids: list[int] | set[int]) -> TokenizerInfo:
    """llguidance's view of a Hugging Face tokenizer plus byte tables (cached per tokenizer)."""
    per_tok = _INFO.setdefault(hf_tokenizer, {})
    info = per_tok.get(width)
    if info is not None:
        return info
    import llguidance.hf

    eos = sorted(int(e) for e in eos_ids) or ([hf_tokenizer.eos_token_id] if hf_tokenizer.eos_token_id is not None else [])
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
    for i, b in enumerate(token_bytes):
        if not b:
            continue
        lengths[i] = len(b)
        crossing[i] = CALL_CROSSING in b
        paren[i] = b"(" in b
        if paren[i] and crossing[i]:
            both.append(i)
        by_bytes.setdefault(b, i)
    info = TokenizerInfo(ll=ll, width=width, eos_ids=eos, token_bytes=token_bytes, lengths=lengths[:width],
                         keep_in_call=_words(~crossing), keep_near_end=_words(~paren), by_bytes=by_bytes,
                         words=words, opens_and_crosses=both)
    per_tok[width] = info
    return info


# ---------------------------------------------------------------------------------------------
# The shared, per-turn part


@dataclass
class _Shared:
    info: TokenizerInfo
    grammar_text: str  # what llguidance reads
    turn: TurnGrammar | None  # the protocol (None for a user grammar)
    user_lark: str | None  # a user grammar (tools off)
    runner: ToolRunner | None
    defer_side_effects: bool
    open_reserve: int  # no call may open with fewer tokens left than this
    finish_ids: list[int]
    max_calls: int = 0  # calls one response may make (0 = no limit)


@dataclass
class PendingCall:
    """A side-effect call on a speculative branch, waiting for that branch to be chosen."""

    tool: str
    args: dict[str, Any]
    call_text: str
    record: ToolCallRecord


def _min_value_len(spec_param: Any) -> int:
    t = spec_param.type
    if t.kind == "str":
        return 2
    if t.kind in ("int", "float"):
        return 1
    if t.kind == "bool":
        return 5
    if t.kind == "list":
        return 2
    return max(len(value_json(c)) for c in t.choices)


def call_reserve(spec: ToolSpec) -> int:
    """An upper bound on the tokens needed to open and finish a call of this tool."""
    required = sum(4 + len(p.name) + _min_value_len(p) for p in spec.params if p.required)
    optional = max((4 + len(p.name) + _min_value_len(p) for p in spec.params if not p.required), default=0)
    return len("CALL(") + len(spec.name) + required + optional + 2


# ---------------------------------------------------------------------------------------------
# The constraint


class GrammarConstraint:
    """ResponseConstraint backed by llguidance; executes tool calls as hard islands."""

    def __init__(self, shared: _Shared, matcher: Any) -> None:
        self._s = shared
        self._m = matcher
        self._buf = bytearray()  # the response so far, islands included
        self._mode = "text"  # "text" | "call"
        self._scan_from = 0  # where to look for a call opening (after the last island)
        self._call_start = 0
        self._calls: list[ToolCallRecord] = []
        self._pending: PendingCall | None = None
        self._left: int | None = None
        self._hist: list[tuple[int, str, int, int, int]] = []
        self._bits = np.zeros(shared.info.words, dtype=np.int32)

    # -- protocol --------------------------------------------------------------------------------
    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return list(self._calls)

    @property
    def pending_call(self) -> PendingCall | None:
        return self._pending

    @property
    def grammar(self) -> TurnGrammar | None:
        return self._s.turn

    @property
    def grammar_text(self) -> str:
        return self._s.grammar_text

    @property
    def grammar_hash(self) -> str:
        """16 hex digits identifying the grammar the masks came from (for DecodeConfig.grammar_hash)."""
        import hashlib

        return hashlib.sha256(self._s.grammar_text.encode()).hexdigest()[:16]

    @property
    def text(self) -> str:
        """The response so far as the constraint saw it (islands included)."""
        return self._buf.decode("utf-8", errors="replace")

    def segments(self) -> list[Any]:
        """The response so far split by the lark parse into text / call / island segments.

        Parses the exact bytes the constraint accepted (a tokenizer's decode may normalise
        spaces); raises ProtocolError if it does not parse (e.g. cut inside a call).
        """
        if self._s.turn is None:
            raise GrammarError("segments() is for the tool protocol; a user grammar has no calls")
        return self._s.turn.parse(self.text)

    def set_tokens_left(self, n: int) -> None:
        """How many sampled tokens the decoder may still take (islands do not count)."""
        self._left = n

    def is_finished(self) -> bool:
        return self._pending is not None or self._m.is_stopped()

    def fork(self) -> "GrammarConstraint":
        other = GrammarConstraint.__new__(GrammarConstraint)
        other.__dict__.update(self.__dict__)
        other._m = self._m.deep_copy()
        other._buf = bytearray(self._buf)
        other._calls = list(self._calls)
        other._hist = list(self._hist)
        other._bits = np.zeros_like(self._bits)
        if self._pending is not None:  # each branch owns its pending record (filled in place later)
            rec = dataclasses.replace(self._pending.record)
            other._pending = dataclasses.replace(self._pending, record=rec)
        return other

    def allowed_tokens(self) -> torch.Tensor:
        """Bool mask (logits width). Numpy does the bit work: torch's thread pool costs milliseconds here."""
        info = self._s.info
        if self._pending is not None or self._m.is_stopped():
            return self._eos_only()
        bits = self._bits
        if self._s.turn is not None and self._mode == "text":
            bits = self._text_mask()
        else:
            self._m.unsafe_compute_mask_ptr(bits.ctypes.data, bits.nbytes)
            if self._m.is_error():
                raise GrammarError(f"grammar engine error: {self._m.get_error()}")
        if self._s.turn is not None:
            if self._mode == "call":
                bits = bits & info.keep_in_call
            elif ((self._left is not None and self._left <= self._s.open_reserve)  # too late to finish one
                  or (self._s.max_calls and len(self._calls) >= self._s.max_calls)):  # no calls left
                bits = bits & info.keep_near_end  # no call may open: the answer goes on in words
            if not bits.any():  # never leave the sampler nothing
                bits = self._bits if self._mode == "call" else self._text_mask()
        mask = np.unpackbits(bits.view(np.uint8), bitorder="little")[: info.width].view(np.bool_)
        if self._left is not None and self._left <= FINISH_WINDOW and not self._m.is_accepting():
            mask = self._steer_to_finish(mask)
        return torch.from_numpy(mask)

    def accept(self, token_id: int) -> Step:
        if self._pending is not None:
            raise GrammarError("a side-effect call is pending: run_pending() before continuing this branch")
        info = self._s.info
        if token_id in info.eos_ids:
            if not self._m.consume_token(token_id):
                raise GrammarError(f"end of response not allowed here: {self._m.get_error()}")
            return Step()
        before = len(self._buf)
        self._hist.append((before, self._mode, self._scan_from, self._call_start, len(self._calls)))
        if not self._m.consume_token(token_id):
            self._hist.pop()
            piece = info.token_bytes[token_id] if 0 <= token_id < len(info.token_bytes) else b"?"
            raise GrammarError(f"token {token_id} ({piece!r}) does not fit the grammar after {self.text[-40:]!r}: "
                               f"{self._m.get_error().splitlines()[0] if self._m.get_error() else 'refused'}")
        self._buf += info.token_bytes[token_id]
        if self._s.turn is None:
            return Step()
        if self._mode == "text":
            self._find_call_opening(before)
        if self._mode == "call" and self._m.compute_ff_bytes().startswith(ISLAND_OPEN):
            return self._close_call()
        return Step()

    # -- side effects on speculative branches ------------------------------------------------------
    def run_pending(self) -> Step:
        """Run the pending side-effect call (after confirmation) and return its island.

        The record handed out by `accept` (result None) is filled in place and returned again
        as `step.tool_call`, so a caller holding both sees one call, not two.
        """
        pending = self._pending
        if pending is None:
            raise GrammarError("no call is pending")
        assert self._s.runner is not None
        done = self._s.runner.run(pending.tool, pending.args, call_text=pending.call_text, speculative=False)
        record = pending.record
        record.__dict__.update(done.__dict__)
        self._pending = None
        return self._island(record)

    # -- rollback (the engine supports it; islands roll back with their call) ----------------------
    def rollback(self, n: int) -> None:
        """Undo the last n consumed tokens (sampled or forced)."""
        if n <= 0:
            return
        if n > len(self._hist):
            raise GrammarError(f"cannot roll back {n} tokens; only {len(self._hist)} were consumed")
        if not self._m.rollback(n):
            raise GrammarError(f"grammar engine could not roll back {n} tokens: {self._m.get_error()}")
        before, mode, scan_from, call_start, ncalls = self._hist[-n]
        del self._hist[-n:]
        del self._buf[before:]
        self._mode, self._scan_from, self._call_start = mode, scan_from, call_start
        del self._calls[ncalls:]
        self._pending = None

    # -- internals ---------------------------------------------------------------------------------
    def _eos_only(self) -> torch.Tensor:
        mask = torch.zeros(self._s.info.width, dtype=torch.bool)
        for e in self._s.info.eos_ids:
            if e < mask.numel():
                mask[e] = True
        return mask

    def _text_state(self) -> tuple[bytes, bool]:
        """What the engine's state depends on in free text, as a small key.

        In free text the parser is always at the same place (between chunks), and the lexer
        (lazy heads + tail) only remembers how much of a call opening the text ends with, and
        an unfinished UTF-8 character. So the mask is a function of: the longest suffix that is
        a proper prefix of an opening or an incomplete character, and whether the text since
        the last island is empty.
        """
        assert self._s.turn is not None
        text = self._buf[self._scan_from:]
        if not text:
            return b"", True
        tail = bytes(text[-6:])
        # an unfinished UTF-8 character at the end
        for k in range(1, min(3, len(tail)) + 1):
            byte = tail[-k]
            if byte & 0xC0 == 0x80:
                continue  # a continuation byte: look further back
            if byte >= 0xC0:
                need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                if k < need:
                    return tail[-k:], False
            break
        for k in range(min(6, len(tail)), 0, -1):
            piece = tail[-k:]
            if any(t.encode().startswith(piece) for t in self._s.turn.triggers):
                return piece, False
        return b"", False

    def prewarm(self) -> None:
        """Compute the free-text masks that every response meets (start, after an island, each
        partial call opening) once per grammar and tokenizer, so no token pays for them later."""
        assert self._s.turn is not None
        info = self._s.info
        prefixes = {""} | {t[:k] for t in self._s.turn.triggers for k in range(1, len(t))}
        for prefix in sorted(prefixes, key=len):
            for lead in ("", " "):
                branch = self.fork()
                ids = [info.by_bytes.get(ch.encode()) for ch in lead + prefix]
                if any(i is None for i in ids):
                    continue
                for i in ids:
                    branch.accept(int(i))
                branch._text_mask()

    def _text_mask(self) -> np.ndarray:
        """The engine's mask for the current free-text state, computed once per state and grammar."""
        cache = self._s.info.text_masks.setdefault(self._s.grammar_text, {})
        key = self._text_state()
        words = cache.get(key)
        if words is None:
            self._m.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
            if self._m.is_error():
                raise GrammarError(f"grammar engine error: {self._m.get_error()}")
            words = self._drop_crossers(self._bits.copy(), key[0])
            if len(cache) > 4096:
                cache.clear()
            cache[key] = words
        return words

    def _drop_crossers(self, words: np.ndarray, suffix: bytes) -> np.ndarray:
        """Clear tokens that would open a call, close it and run into its island in one piece
        (e.g. `("")\n` after `SEARCH`): the island must come from the tool, never the model."""
        assert self._s.turn is not None
        info = self._s.info
        triggers = [t.encode() for t in self._s.turn.triggers]
        flags = words.view(np.uint32)
        for tid in info.opens_and_crosses:
            bit = np.uint32(1 << (tid & 31))
            if not flags[tid >> 5] & bit:
                continue
            text = suffix + info.token_bytes[tid]
            starts = [p for p in (text.find(t) for t in triggers) if p >= 0]
            if starts and text.find(CALL_CROSSING, min(starts)) >= 0:
                flags[tid >> 5] &= ~bit
        return words

    def _find_call_opening(self, before: int) -> None:
        """Track where a call opens (the engine's lazy head lexeme ends exactly at the opening)."""
        assert self._s.turn is not None
        start = max(self._scan_from, before - 6)
        window = bytes(self._buf[start:])
        best = -1
        for trig in self._s.turn.triggers:
            pos = window.find(trig.encode())
            if pos >= 0 and (best < 0 or pos < best):
                best = pos
        if best >= 0:
            self._mode = "call"
            self._call_start = start + best

    def _close_call(self) -> Step:
        turn = self._s.turn
        runner = self._s.runner
        assert turn is not None and runner is not None
        call_text = bytes(self._buf[self._call_start:]).decode("utf-8")
        try:
            call = turn.parse_call(call_text)
        except ProtocolError as exc:  # the engine and lark disagree: report, never guess
            record = ToolCallRecord(tool="?", args={}, result=None, error=str(exc), seconds=0.0, call_text=call_text)
            record.island_text = "\n=> " + runner.island_content(record) + "\n"
            return self._island(record)
        spec = runner.registry.get(call.tool) if call.tool in runner.registry else None
        if spec is not None and not spec.pure and self._s.defer_side_effects:
            record = ToolCallRecord(tool=call.tool, args=call.args, result=None, error=None, seconds=0.0,
                                    pure=False, speculative=True, call_text=call_text)
            self._pending = PendingCall(call.tool, call.args, call_text, record)
            return Step(tool_call=record)
        record = runner.run(call.tool, call.args, call_text=call_text,
                            speculative=self._s.defer_side_effects and spec is not None and spec.pure)
        return self._island(record)

    def _island(self, record: ToolCallRecord) -> Step:
        info = self._s.info
        island = record.island_text
        ids = info.encode(island)
        self._hist.append((len(self._buf), self._mode, self._scan_from, self._call_start, len(self._calls)))
        self._hist.extend([self._hist[-1]] * (len(ids) - 1))
        if not self._m.consume_tokens(ids):
            raise GrammarError(f"the island for {record.call_text!r} did not fit the grammar: {self._m.get_error()}")
        self._buf += island.encode("utf-8")
        self._mode = "text"
        self._scan_from = len(self._buf)
        self._calls.append(record)
        return Step(forced_token_ids=ids, forced_is_island=True, tool_call=record)

    # -- finishing in time -------------------------------------------------------------------------
    def _done(self, m: Any) -> bool:
        if m.is_accepting():
            return True
        return self._s.turn is not None and m.compute_ff_bytes().startswith(ISLAND_OPEN)

    def _distance(self, m: Any, limit: int = ROLLOUT_LIMIT) -> int:
        """Tokens a simple closing policy needs from matcher state m (consumed; pass a copy).

        The policy: a piece that finishes at once if there is one, else the first piece that fits,
        else what the grammar forces.
        """
        for steps in range(limit):
            if self._done(m):
                return steps
            first = -1
            for tid in self._s.finish_ids:
                if m.try_consume_tokens([tid]) == 1:
                    if self._done(m):
                        return steps + 1
                    m.rollback(1)
                    if first < 0:
                        first = tid
            if first >= 0:
                m.consume_token(first)
            else:
                forced = m.compute_ff_tokens()
                if not forced or m.try_consume_tokens(forced[:1]) != 1:
                    return limit
        return limit

    def _steer_to_finish(self, mask: np.ndarray) -> np.ndarray:
        """Near the limit and not finishable yet: allow only the token with the shortest way to a finish."""
        assert self._left is not None
        if self._s.turn is not None and self._mode == "text":
            return mask
        here = self._distance(self._m.deep_copy())
        if self._left > here + FINISH_MARGIN:
            return mask
        best, best_d = -1, ROLLOUT_LIMIT + 1
        for tid in self._s.finish_ids:
            if tid < mask.size and mask[tid]:
                m = self._m.deep_copy()
                if m.try_consume_tokens([tid]) != 1:
                    continue
                d = self._distance(m)
                if d < best_d:
                    best, best_d = tid, d
        if best < 0:
            forced = self._m.compute_ff_tokens()
            if forced and forced[0] < mask.size and mask[forced[0]]:
                best = forced[0]
            else:
                best = int(np.argmax(np.where(mask, self._s.info.lengths, -1)))
        out = np.zeros_like(mask)
        out[best] = True
        return out


# ---------------------------------------------------------------------------------------------
# Factory and grammar checking


_TURN_CACHE: dict[str, TurnGrammar] = {}


def turn_grammar(registry: ToolRegistry | None) -> TurnGrammar:
    """The turn grammar for a registry (cached by its text)."""
    g = build_turn_grammar(registry)
    cached = _TURN_CACHE.get(g.llguidance)
    if cached is not None and cached.registry is registry:
        return cached
    if len(_TURN_CACHE) > 32:
        _TURN_CACHE.clear()
    _TURN_CACHE[g.llguidance] = g
    return g


def make_constraint(lm: Any, registry: ToolRegistry | None, user_grammar: str | None = None,
                    confirm: Confirm | None = None, defer_side_effects: bool = False,
                    result_limit: int = DEFAULT_RESULT_LIMIT, max_calls: int = 0) -> GrammarConstraint:
    """A fresh constraint for one response.

    registry: the tools the model may call (None or empty: free text, no calls).
    user_grammar: Lark text (`--grammar`); the response must match it and tools are off.
    confirm: asked before a side-effect tool runs; None refuses such tools (use --yes to allow).
    defer_side_effects: on speculative branches a side-effect call is not run; the branch pauses
    (is_finished) with `pending_call` set until `run_pending()`.
    max_calls: after this many calls no call can open (no `(` in the text that follows); 0 = no limit.
    """
    info = tokenizer_info(lm.tokenizer, lm.vocab_size, lm.eos_token_ids)
    finish_ids = [info.by_bytes[p] for p in FINISH_PIECES if p in info.by_bytes]
    if user_grammar is not None:
        errors = check_grammar(user_grammar)
        if errors:
            raise GrammarError("the grammar is not valid:\n" + "\n".join(str(e) for e in errors))
        shared = _Shared(info=info, grammar_text=user_grammar, turn=None, user_lark=user_grammar, runner=None,
                         defer_side_effects=defer_side_effects, open_reserve=0, finish_ids=finish_ids)
        return GrammarConstraint(shared, info.matcher(user_grammar))
    turn = turn_grammar(registry)
    runner = ToolRunner(turn.registry, confirm=confirm, result_limit=result_limit)
    reserve = max((call_reserve(s) for s in turn.registry), default=0) + FINISH_MARGIN + 2
    shared = _Shared(info=info, grammar_text=turn.llguidance, turn=turn, user_lark=None, runner=runner,
                     defer_side_effects=defer_side_effects, open_reserve=reserve, finish_ids=finish_ids,
                     max_calls=max_calls)
    constraint = GrammarConstraint(shared, info.matcher(turn.llguidance))
    if turn.llguidance not in info.text_masks:
        constraint.prewarm()
    return constraint


@dataclass
class GrammarIssue:
    """One problem in a grammar file, with its place."""

    line: int
    column: int
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.severity}: {self.message}"


_LOC = re.compile(r"^(?:at )?(\d+)\((\d+)\):\s*")


def _issue_from_llguidance(message: str, severity: str = "error") -> GrammarIssue:
    """llguidance reports `at LINE(COL): message` followed by an excerpt; keep place and first line."""
    text = message.strip()
    match = _LOC.match(text)
    line = col = 0
    if match:
        line, col = int(match.group(1)), int(match.group(2))
        text = text[match.end():]
    first = text.splitlines()[0] if text else "invalid grammar"
    return GrammarIssue(line, col, first, severity)


def check_grammar(text: str, *, lark_compat: bool = False) -> list[GrammarIssue]:
    """Errors (line, column, message) that make a grammar unusable; empty when it is fine.

    The grammar is checked by llguidance, the engine that computes the masks (it reads a Lark
    dialect). With lark_compat, also report (as warnings) when Python's lark cannot read it,
    since lark is what parses finished responses.
    """
    from llguidance import LLMatcher

    issues: list[GrammarIssue] = []
    if not text.strip():
        return [GrammarIssue(1, 1, "the grammar is empty")]
    is_error, messages = LLMatcher.validate_grammar_with_warnings(LLMatcher.grammar_from_lark(text))
    if is_error:
        issues.extend(_issue_from_llguidance(m) for m in messages)
        return issues
    if lark_compat:
        issues.extend(_issue_from_llguidance(m, "warning") for m in messages)
        issue = lark_issue(text)
        if issue is not None:
            issues.append(issue)
    return issues


def lark_issue(text: str) -> GrammarIssue | None:
    """A warning when Python's lark cannot read the grammar (responses then cannot be re-parsed)."""
    from lark import Lark
    from lark.exceptions import GrammarError as LarkGrammarError
    from lark.exceptions import UnexpectedInput

    try:
        Lark(text, parser="earley", lexer="dynamic")
    except UnexpectedInput as exc:
        return GrammarIssue(getattr(exc, "line", 0) or 0, getattr(exc, "column", 0) or 0,
                            "Python's lark cannot read this (llguidance-only syntax?); "
                            "finished responses will not be re-parsed", "warning")
    except (LarkGrammarError, Exception) as exc:  # lark raises several kinds for grammar problems
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = re.search(r"line (\d+),? col(?:umn)? (\d+)", str(exc))
        line, col = (int(where.group(1)), int(where.group(2))) if where else (1, 1)
        return GrammarIssue(line, col, f"Python's lark cannot read this grammar ({first}); "
                            "llguidance can, but finished responses will not be re-parsed", "warning")
    return None


def parse_with_user_grammar(grammar_text: str, response: str) -> Any:
    """Parse a finished response with Python's lark (Earley, like llguidance); raises on mismatch."""
    from lark import Lark

    return Lark(grammar_text, parser="earley", lexer="dynamic").parse(response)
