"""NativeConstraint: the model's own tool-call syntax under llguidance, tool results as hard islands.

A response is a chain of segments. Each segment has its own matcher on a grammar of ONE segment
(`agent.grammar.native.grammar`): free text, or free text and one call. Free text is free until
the format's opening (lazy, as llama.cpp does it); from there the name and arguments must be
a registered tool's. When the call closes, the tool runs through the ToolRunner exactly as in
GrammarConstraint (run, defer a side effect on search branches, refuse what does not parse),
the island (the template's tool-result text) is handed to the decoder as forced tokens, and a
fresh matcher starts the next segment. Finished segments are kept on a stack, shared by forks
and copied before a rollback reaches into one, so `fork` is cheap and `rollback` crosses islands.

Masks come from llguidance at every step (no cache): one `unsafe_compute_mask_ptr` per token.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
from llguidance import LLMatcher

from agent.decoding.constraint import Step
from agent.grammar.errors import GrammarError
from agent.grammar.finishing import FINISH_WINDOW, FinishSteering
from agent.grammar.native.format import NativeCallError, NativeFormat
from agent.grammar.token_split import mask_split_forced
from agent.grammar.tokenizer import TokenizerInfo
from agent.tooling.records import PendingCall, ToolCallRecord
from agent.tooling.registry import ToolRegistry
from agent.tooling.runner import ToolRunner

FIRST, LATER, TEXT_ONLY = "first", "later", "none"  # the segment grammars, by role


@dataclass
class NativeSetup:
    """What every branch of one response shares (forks copy the reference)."""

    fmt: NativeFormat
    info: TokenizerInfo
    special_text: dict[int, bytes]  # added tokens' text (TokenizerInfo gives them no bytes)
    grammars: dict[str, str]  # FIRST / LATER / TEXT_ONLY -> llguidance grammar text
    registry: ToolRegistry
    runner: ToolRunner
    defer_side_effects: bool
    first_is_call: bool  # tool_choice required or a name: the first segment is a call, nothing else
    open_reserve: int  # no call may open with fewer tokens left than this
    finishing: FinishSteering
    max_calls: int = 0  # 0 = no limit


@dataclass
class Segment:
    """The text since the last island (or the start) and the matcher reading it."""

    matcher: LLMatcher
    role: str  # which grammar (FIRST / LATER / TEXT_ONLY)
    ids: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    in_call: bool = False

    def copy(self) -> Segment:
        return Segment(self.matcher.deep_copy(), self.role, list(self.ids), bytearray(self.text), self.in_call)


@dataclass(frozen=True)
class Island:
    ids: list[int]
    record: ToolCallRecord


class NativeConstraint:
    """ResponseConstraint for a model's own tool-call format (see the module docstring)."""

    def __init__(self, shared: NativeSetup) -> None:
        self._shared = shared
        self._done: list[tuple[Segment, Island]] = []  # finished segments, each with its island
        self._seg = self._segment(FIRST)
        self._calls: list[ToolCallRecord] = []
        self._pending: PendingCall | None = None
        self._tokens_left: int | None = None
        self._words = np.zeros(shared.info.words, dtype=np.int32)  # scratch for the engine's mask

    # -- what callers read -----------------------------------------------------------------------
    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return list(self._calls)

    @property
    def pending_call(self) -> PendingCall | None:
        return self._pending

    @property
    def format(self) -> NativeFormat:
        return self._shared.fmt

    @property
    def grammar_hash(self) -> str:
        """16 hex digits identifying the grammars (and the format) the masks come from."""
        shared = self._shared
        text = "\n".join([shared.fmt.name] + [shared.grammars[k] for k in sorted(shared.grammars)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def text(self) -> str:
        """The response so far as this constraint saw it, islands included."""
        parts = [bytes(seg.text) + self._island_bytes(island) for seg, island in self._done]
        return (b"".join(parts) + bytes(self._seg.text)).decode("utf-8", errors="replace")

    @property
    def in_call(self) -> bool:
        return self._seg.in_call

    # -- the ResponseConstraint protocol ---------------------------------------------------------
    def set_tokens_left(self, n: int) -> None:
        self._tokens_left = n

    def is_finished(self) -> bool:
        return self._pending is not None or self._seg.matcher.is_stopped()

    def fork(self) -> NativeConstraint:
        other = NativeConstraint.__new__(NativeConstraint)
        other.__dict__.update(self.__dict__)
        other._seg = self._seg.copy()
        other._done = list(self._done)  # finished segments are shared; rollback copies before changing one
        other._calls = list(self._calls)
        other._words = np.zeros_like(self._words)
        if self._pending is not None:  # each branch owns its pending record (filled in place later)
            other._pending = dataclasses.replace(self._pending, record=dataclasses.replace(self._pending.record))
        return other

    def allowed_tokens(self) -> torch.Tensor:
        """Bool mask (logits width) straight from the engine; numpy does the bit work."""
        shared, info, seg = self._shared, self._shared.info, self._seg
        if self._pending is not None or seg.matcher.is_stopped():
            return self._eos_only()
        if (not seg.in_call and seg.role != TEXT_ONLY and self._tokens_left is not None
                and self._tokens_left <= shared.open_reserve and not (seg.role == FIRST and shared.first_is_call)):
            self._close_the_door()  # too late for a call to finish: the answer goes on in words
            seg = self._seg
        words = self._words
        seg.matcher.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
        if seg.matcher.is_error():
            raise GrammarError(f"grammar engine error: {seg.matcher.get_error().strip().splitlines()[0]}")
        mask = np.unpackbits(words.view(np.uint8), bitorder="little")[: info.width].view(np.bool_)
        if seg.in_call:
            mask = mask_split_forced(info, seg.matcher, mask)
        if (seg.in_call and self._tokens_left is not None and self._tokens_left <= FINISH_WINDOW
                and not seg.matcher.is_accepting()):
            mask = shared.finishing.steer(seg.matcher, mask, self._tokens_left)
        return torch.from_numpy(mask)

    def accept(self, token_id: int) -> Step:
        if self._pending is not None:
            raise GrammarError("a side-effect call is pending: run_pending() before continuing this branch")
        shared, seg = self._shared, self._seg
        if token_id in shared.info.eos_ids:
            if not seg.matcher.consume_token(token_id):
                raise GrammarError(f"end of response not allowed here: {seg.matcher.get_error()}")
            return Step()
        if not seg.matcher.consume_token(token_id):
            error = seg.matcher.get_error()
            raise GrammarError(f"token {token_id} ({self._piece(token_id)!r}) does not fit the {shared.fmt.name} "
                               f"tool-call grammar after {self.text[-40:]!r}: "
                               f"{error.splitlines()[0] if error else 'refused'}")
        seg.ids.append(token_id)
        seg.text += self._piece(token_id)
        if not seg.in_call:
            seg.in_call = shared.fmt.spec.call_start(self._segment_text(seg)) >= 0
        if seg.in_call and seg.matcher.is_accepting():
            return self._close_call()
        return Step()

    def run_pending(self) -> Step:
        """Run the pending side-effect call (after confirmation) and return its island; the record
        handed out at the call is filled in place and returned again as `step.tool_call`."""
        pending = self._pending
        if pending is None:
            raise GrammarError("no call is pending")
        record = self._shared.runner.run_pending(pending)
        self._pending = None
        return self._island(record)

    def rollback(self, n: int) -> None:
        """Undo the last n tokens (sampled or forced). An island goes as a whole, with the token
        that closed its call: a cut inside one (or right after it) also undoes that token."""
        if n <= 0:
            return
        total = sum(len(s.ids) + len(i.ids) for s, i in self._done) + len(self._seg.ids)
        if n > total:
            raise GrammarError(f"cannot roll back {n} tokens; only {total} were consumed")
        while n > len(self._seg.ids):
            n -= len(self._seg.ids)
            segment, island = self._done.pop()
            self._calls.pop()
            n = max(n - len(island.ids), 1)
            self._seg = segment.copy()  # other branches may hold it: never change it in place
        seg = self._seg
        if not seg.matcher.rollback(n):
            raise GrammarError(f"grammar engine could not roll back {n} tokens: {seg.matcher.get_error()}")
        del seg.ids[len(seg.ids) - n:]
        seg.text = bytearray(b"".join(self._piece(t) for t in seg.ids))
        seg.in_call = self._shared.fmt.spec.call_start(self._segment_text(seg)) >= 0
        self._pending = None

    # -- internals ---------------------------------------------------------------------------------
    def _segment(self, role: str) -> Segment:
        return Segment(self._shared.info.matcher(self._shared.grammars[role]), role)

    def _piece(self, token_id: int) -> bytes:
        info = self._shared.info
        piece = info.token_bytes[token_id] if 0 <= token_id < len(info.token_bytes) else b""
        return piece or self._shared.special_text.get(token_id, b"")

    @staticmethod
    def _segment_text(seg: Segment) -> str:
        return seg.text.decode("utf-8", errors="replace")

    def _island_bytes(self, island: Island) -> bytes:
        return island.record.island_text.encode("utf-8")

    def _eos_only(self) -> torch.Tensor:
        mask = torch.zeros(self._shared.info.width, dtype=torch.bool)
        for e in self._shared.info.eos_ids:
            if e < mask.numel():
                mask[e] = True
        return mask

    def _close_the_door(self) -> None:
        """Continue this segment under the text-only grammar (same tokens), so no call can open."""
        seg = self._seg
        text_only = self._segment(TEXT_ONLY)
        if text_only.matcher.consume_tokens(seg.ids):  # it reads the same free text
            text_only.ids, text_only.text = list(seg.ids), bytearray(seg.text)
            self._seg = text_only

    def _close_call(self) -> Step:
        shared = self._shared
        runner = shared.runner
        text = self._segment_text(self._seg)
        call_text = text[shared.fmt.spec.call_start(text):]
        try:
            name, args = shared.fmt.parse_call(call_text, shared.registry)
        except NativeCallError as exc:  # the engine and the parser disagree: report, never guess
            return self._island(runner.refuse(call_text, str(exc)))
        spec = runner.find(name)
        if spec is not None and not spec.pure and shared.defer_side_effects:
            self._pending = runner.defer(name, args, call_text)
            return Step(tool_call=self._pending.record)
        record = runner.run(name, args, call_text=call_text,
                            speculative=shared.defer_side_effects and spec is not None and spec.pure)
        return self._island(record)

    def _island(self, record: ToolCallRecord) -> Step:
        shared = self._shared
        limit = shared.runner.result_limit
        record.island_text = shared.fmt.island_text(record.result, record.error, limit)
        ids = shared.fmt.island_ids(record.result, record.error, limit)
        self._done.append((self._seg, Island(ids, record)))
        self._calls.append(record)
        full = shared.max_calls and len(self._calls) >= shared.max_calls
        self._seg = self._segment(TEXT_ONLY if full else LATER)
        return Step(forced_token_ids=list(ids), forced_is_island=True, tool_call=record)

