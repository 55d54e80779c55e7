"""GrammarConstraint: token masks from llguidance, tool calls executed as hard islands.

The decoder asks `allowed_tokens()` before each sampled token and calls `accept(token)` after.
Masks come from llguidance's matcher, advanced token by token (never recomputed from scratch).
When a call's closing `)` is accepted (the engine then forces the island opening `\\n=> `), the
call text is parsed with lark, the tool runs through the ToolRunner, and the island
(`agent.grammar.protocol.format_island`) is tokenized, consumed by the matcher and handed to the
decoder as forced tokens. The island is one lexeme of the grammar, so nothing inside it can open
a call. Free-text masks are cached by engine state (`agent.grammar.free_text`); finishing within
the token budget is `agent.grammar.finishing`; the tokenizer tables are `agent.grammar.tokenizer`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from llguidance import LLMatcher

from agent.decoding.constraint import Step
from agent.grammar.checking import check_grammar
from agent.grammar.errors import GrammarError
from agent.grammar.finishing import FINISH_WINDOW, ISLAND_OPEN, FinishSteering, open_reserve
from agent.grammar.free_text import LINE_STARTS, drop_crossers, find_call_opening, free_text_state
from agent.grammar.islands import DEFAULT_RESULT_LIMIT
from agent.grammar.protocol import ProtocolError, TurnGrammar, build_turn_grammar
from agent.grammar.token_split import mask_split_forced
from agent.grammar.tokenizer import BoundedCache, TokenizerInfo, tokenizer_info
from agent.tooling.records import PendingCall, ToolCallRecord
from agent.tooling.registry import ToolRegistry
from agent.tooling.runner import Confirm, ToolRunner

if TYPE_CHECKING:
    from agent.model.runtime import LoadedModel

# One undo-log entry per consumed token: the state before it, as
# (response length, in a call, where the text since the last island starts, call start, calls made).
# A plain tuple: one is built per token.
UndoEntry = tuple[int, bool, int, int, int]


@dataclass
class SharedSetup:
    """What every branch of one response shares (forks copy the reference, never the contents)."""

    info: TokenizerInfo
    grammar_text: str  # what llguidance reads
    turn: TurnGrammar | None  # the protocol (None for a user grammar)
    triggers: list[bytes]  # the protocol's call openings (`SEARCH(` ...), encoded
    runner: ToolRunner | None  # None for a user grammar (tools off)
    defer_side_effects: bool
    open_reserve: int  # no call may open with fewer tokens left than this
    finishing: FinishSteering
    max_calls: int = 0  # calls one response may make (0 = no limit)


class GrammarConstraint:
    """ResponseConstraint backed by llguidance; executes tool calls as hard islands."""

    def __init__(self, shared: SharedSetup, matcher: LLMatcher) -> None:
        self._shared = shared
        self._matcher = matcher
        self._response = bytearray()  # the response so far, islands included
        self._in_call = False
        self._island_end = 0  # where the text since the last island starts (a call opening is looked for there)
        self._call_start = 0
        self._calls: list[ToolCallRecord] = []
        self._pending: PendingCall | None = None
        self._tokens_left: int | None = None
        self._undo_log: list[UndoEntry] = []
        self._mask_words = np.zeros(shared.info.words, dtype=np.int32)  # scratch for the engine's mask

    # -- what callers read -----------------------------------------------------------------------
    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return list(self._calls)

    @property
    def pending_call(self) -> PendingCall | None:
        return self._pending

    @property
    def grammar(self) -> TurnGrammar | None:
        return self._shared.turn

    @property
    def grammar_text(self) -> str:
        return self._shared.grammar_text

    @property
    def grammar_hash(self) -> str:
        """16 hex digits identifying the grammar the masks came from (for DecodeConfig.grammar_hash)."""
        return hashlib.sha256(self._shared.grammar_text.encode()).hexdigest()[:16]

    @property
    def text(self) -> str:
        """The response so far as the constraint saw it (islands included)."""
        return self._response.decode("utf-8", errors="replace")

    @property
    def token_bytes(self) -> list[bytes]:
        """The bytes of each token id as the engine sees them (b"" for special tokens)."""
        return self._shared.info.token_bytes

    @property
    def in_call(self) -> bool:
        """True between a call's opening and its island."""
        return self._in_call

    # -- the ResponseConstraint protocol ---------------------------------------------------------
    def set_tokens_left(self, n: int) -> None:
        """How many sampled tokens the decoder may still take (islands do not count)."""
        self._tokens_left = n

    def is_finished(self) -> bool:
        return self._pending is not None or self._matcher.is_stopped()

    def fork(self) -> GrammarConstraint:
        other = GrammarConstraint.__new__(GrammarConstraint)
        other.__dict__.update(self.__dict__)
        other._matcher = self._matcher.deep_copy()
        other._response = bytearray(self._response)
        other._calls = list(self._calls)
        other._undo_log = list(self._undo_log)
        other._mask_words = np.zeros_like(self._mask_words)
        if self._pending is not None:  # each branch owns its pending record (filled in place later)
            record = dataclasses.replace(self._pending.record)
            other._pending = dataclasses.replace(self._pending, record=record)
        return other

    def allowed_tokens(self) -> torch.Tensor:
        """Bool mask (logits width). Numpy does the bit work: torch's thread pool costs milliseconds here."""
        shared, info = self._shared, self._shared.info
        if self._pending is not None or self._matcher.is_stopped():
            return self._eos_only()
        words = self._mask_words
        if shared.turn is not None and not self._in_call:
            words = self.free_text_mask()
        else:
            self._compute_engine_mask()
        if shared.turn is not None:
            if self._in_call:
                words = words & info.keep_in_call
            elif ((self._tokens_left is not None and self._tokens_left <= shared.open_reserve)  # too late to finish
                  or (shared.max_calls and len(self._calls) >= shared.max_calls)):  # no calls left
                words = words & info.keep_near_end  # no call may open: the answer goes on in words
            if not words.any():  # never leave the sampler nothing
                words = self._mask_words if self._in_call else self.free_text_mask()
        mask = np.unpackbits(words.view(np.uint8), bitorder="little")[: info.width].view(np.bool_)
        if shared.turn is None or self._in_call:
            mask = mask_split_forced(info, self._matcher, mask)
        if (self._tokens_left is not None and self._tokens_left <= FINISH_WINDOW
                and not self._matcher.is_accepting()
                and (shared.turn is None or self._in_call)):  # free text can always end where it is
            mask = shared.finishing.steer(self._matcher, mask, self._tokens_left)
        return torch.from_numpy(mask)

    def accept(self, token_id: int) -> Step:
        if self._pending is not None:
            raise GrammarError("a side-effect call is pending: run_pending() before continuing this branch")
        info = self._shared.info
        if token_id in info.eos_ids:
            if not self._matcher.consume_token(token_id):
                raise GrammarError(f"end of response not allowed here: {self._matcher.get_error()}")
            return Step()
        before = len(self._response)
        self._undo_log.append((before, self._in_call, self._island_end, self._call_start, len(self._calls)))
        if not self._matcher.consume_token(token_id):
            self._undo_log.pop()
            piece = info.token_bytes[token_id] if 0 <= token_id < len(info.token_bytes) else b"?"
            error = self._matcher.get_error()
            raise GrammarError(f"token {token_id} ({piece!r}) does not fit the grammar after {self.text[-40:]!r}: "
                               f"{error.splitlines()[0] if error else 'refused'}")
        self._response += info.token_bytes[token_id]
        if self._shared.turn is None:
            return Step()
        if not self._in_call:
            self._track_call_opening(before)
        if self._in_call and self._matcher.compute_ff_bytes().startswith(ISLAND_OPEN):
            return self._close_call()
        return Step()

    def run_pending(self) -> Step:
        """Run the pending side-effect call (after confirmation) and return its island.

        The record handed out by `accept` (result None) is filled in place and returned again
        as `step.tool_call`, so a caller holding both sees one call, not two.
        """
        pending = self._pending
        if pending is None:
            raise GrammarError("no call is pending")
        assert self._shared.runner is not None  # only the protocol defers calls
        record = self._shared.runner.run_pending(pending)
        self._pending = None
        return self._island(record)

    def rollback(self, n: int) -> None:
        """Undo the last n consumed tokens (sampled or forced); islands roll back with their call."""
        if n <= 0:
            return
        if n > len(self._undo_log):
            raise GrammarError(f"cannot roll back {n} tokens; only {len(self._undo_log)} were consumed")
        if not self._matcher.rollback(n):
            raise GrammarError(f"grammar engine could not roll back {n} tokens: {self._matcher.get_error()}")
        before, self._in_call, self._island_end, self._call_start, calls_made = self._undo_log[-n]
        del self._undo_log[-n:]
        del self._response[before:]
        del self._calls[calls_made:]
        self._pending = None

    # -- free-text masks (cached per engine state: see agent.grammar.free_text) ---------------------
    def free_text_mask(self) -> np.ndarray:
        """The engine's mask (bitmask words) for the current free-text state, computed once per state."""
        if self._shared.turn is not None and self._shared.turn.first_call_forced and not self._calls:
            # before the forced first call the engine allows only its opening: a state the cache's
            # key (text since the last island) would confuse with the free text after an island
            return self.fresh_free_text_mask()
        cache = self._shared.info.masks_for(self._shared.grammar_text)
        key = self._free_text_state()
        words = cache.get(key)
        if words is None:
            words = cache.put(key, self.fresh_free_text_mask(key[0]))
        return words

    def fresh_free_text_mask(self, suffix: bytes | None = None) -> np.ndarray:
        """The free-text mask computed by the engine now, bypassing the cache (a new array).

        `suffix` is the state key's text ending (computed when not given).
        """
        assert self._shared.turn is not None, "free-text masks are for the tool protocol"
        if suffix is None:
            suffix = self._free_text_state()[0]
        self._compute_engine_mask()
        return drop_crossers(self._mask_words.copy(), suffix, self._shared.info, self._shared.triggers)

    def prewarm(self) -> None:
        """Compute the free-text masks that every response meets (start, after an island, each
        partial call opening, a line start and the island arrow's start after it) once per grammar
        and tokenizer, so no token pays for them later."""
        assert self._shared.turn is not None
        by_bytes = self._shared.info.by_bytes
        triggers = self._shared.turn.triggers
        prefixes = {""} | {t[:k] for t in triggers for k in range(1, len(t))} | {s.decode() for s in LINE_STARTS}
        for prefix in sorted(prefixes, key=len):
            for lead in ("", " "):
                ids = [by_bytes.get(ch.encode()) for ch in lead + prefix]
                if any(i is None for i in ids):
                    continue
                branch = self.fork()
                for i in ids:
                    branch.accept(int(i))
                branch.free_text_mask()

    # -- internals ---------------------------------------------------------------------------------
    def _compute_engine_mask(self) -> None:
        """The engine's mask for the current state, into the scratch words."""
        words = self._mask_words
        self._matcher.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
        if self._matcher.is_error():
            raise GrammarError(f"grammar engine error: {self._matcher.get_error().strip().splitlines()[0]}")

    def _free_text_state(self) -> tuple[bytes, bool]:
        return free_text_state(self._response[self._island_end:], self._shared.triggers)

    def _eos_only(self) -> torch.Tensor:
        mask = torch.zeros(self._shared.info.width, dtype=torch.bool)
        for e in self._shared.info.eos_ids:
            if e < mask.numel():
                mask[e] = True
        return mask

    def _track_call_opening(self, before: int) -> None:
        """Track where a call opens (the engine's lazy head lexeme ends exactly at the opening)."""
        start = max(self._island_end, before - 6)
        found = find_call_opening(bytes(self._response[start:]), self._shared.triggers)
        if found >= 0:
            self._in_call = True
            self._call_start = start + found

    def _close_call(self) -> Step:
        shared = self._shared
        assert shared.turn is not None and shared.runner is not None
        runner = shared.runner
        call_text = bytes(self._response[self._call_start:]).decode("utf-8")
        try:
            call = shared.turn.parse_call(call_text)
        except ProtocolError as exc:  # the engine and lark disagree: report, never guess
            return self._island(runner.refuse(call_text, str(exc)))
        spec = runner.find(call.tool)
        if spec is not None and not spec.pure and shared.defer_side_effects:
            self._pending = runner.defer(call.tool, call.args, call_text)
            return Step(tool_call=self._pending.record)
        record = runner.run(call.tool, call.args, call_text=call_text,
                            speculative=shared.defer_side_effects and spec is not None and spec.pure)
        return self._island(record)

    def _island(self, record: ToolCallRecord) -> Step:
        island = record.island_text
        ids = self._shared.info.encode(island)
        entry = (len(self._response), self._in_call, self._island_end, self._call_start, len(self._calls))
        self._undo_log.extend([entry] * len(ids))
        if not self._matcher.consume_tokens(ids):
            raise GrammarError(f"the island for {record.call_text!r} did not fit the grammar: "
                               f"{self._matcher.get_error()}")
        self._response += island.encode("utf-8")
        self._in_call = False
        self._island_end = len(self._response)
        self._calls.append(record)
        return Step(forced_token_ids=ids, forced_is_island=True, tool_call=record)


# ---------------------------------------------------------------------------------------------
# The factory

# grammar text -> the TurnGrammar built for it (its lark parser is built once, on first use)
TURN_GRAMMARS: BoundedCache[str, TurnGrammar] = BoundedCache(32)


def turn_grammar(registry: ToolRegistry | None, tool_choice: str = "auto") -> TurnGrammar:
    """The turn grammar for a registry and tool choice (cached by its text)."""
    grammar = build_turn_grammar(registry, tool_choice)
    cached = TURN_GRAMMARS.get(grammar.llguidance)
    if cached is not None and cached.registry is registry:
        return cached
    return TURN_GRAMMARS.put(grammar.llguidance, grammar)


def make_constraint(lm: LoadedModel, registry: ToolRegistry | None, user_grammar: str | None = None,
                    confirm: Confirm | None = None, defer_side_effects: bool = False,
                    result_limit: int = DEFAULT_RESULT_LIMIT, max_calls: int = 0,
                    tool_choice: str = "auto") -> GrammarConstraint:
    """A fresh constraint for one response.

    registry: the tools the model may call (None or empty: free text, no calls).
    user_grammar: Lark text (`--grammar`); the response must match it and tools are off.
    confirm: asked before a side-effect tool runs; None refuses such tools (use --yes to allow).
    defer_side_effects: on speculative branches a side-effect call is not run; the branch pauses
    (is_finished) with `pending_call` set until `run_pending()`.
    max_calls: after this many calls no call can open (no `(` in the text that follows); 0 = no limit.
    tool_choice: auto / required / none / a tool's name (agent.grammar.protocol.build_turn_grammar).
    """
    info = tokenizer_info(lm.tokenizer, lm.vocab_size, lm.eos_token_ids)
    if user_grammar is not None:
        # a compiled grammar passed this check before (it walks the grammar: milliseconds per call)
        errors = [] if user_grammar in info.compiled_matchers else check_grammar(user_grammar)
        if errors:
            raise GrammarError("the grammar is not valid:\n" + "\n".join(str(e) for e in errors))
        shared = SharedSetup(info=info, grammar_text=user_grammar, turn=None, triggers=[], runner=None,
                             defer_side_effects=defer_side_effects, open_reserve=0,
                             finishing=FinishSteering.for_tokenizer(info, protocol=False))
        return GrammarConstraint(shared, info.matcher(user_grammar))
    turn = turn_grammar(registry, tool_choice)
    shared = SharedSetup(info=info, grammar_text=turn.llguidance, turn=turn,
                         triggers=[t.encode() for t in turn.triggers],
                         runner=ToolRunner(turn.registry, confirm=confirm, result_limit=result_limit),
                         defer_side_effects=defer_side_effects, open_reserve=open_reserve(turn.registry),
                         finishing=FinishSteering.for_tokenizer(info, protocol=True), max_calls=max_calls)
    constraint = GrammarConstraint(shared, info.matcher(turn.llguidance))
    # (a response that must open with a call cannot take the free text prewarming writes at its start;
    # its masks are cached as they are met)
    if turn.llguidance not in info.free_text_masks and not turn.first_call_forced:
        constraint.prewarm()
    return constraint
