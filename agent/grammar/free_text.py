"""The engine's state in free text, as a small key, so free-text masks can be computed once and reused.

In free text the protocol's parser is always at the same place (between chunks), and the lexer
(lazy heads + tail) only remembers how much of a call opening the text ends with, an unfinished
UTF-8 character, and whether the text is at a line start, perhaps followed by `=` or `=>` (no
free-text line may start with the island arrow `=> `). So the mask is a function of: the longest
suffix that is a proper prefix of an opening or an incomplete character, or the line start with
what follows it (`\n`, `\n=`, `\n=>`; the text since an island starts at a line start), and
whether the text since the last island is empty. `agent.grammar.constraint` caches masks by this
key (TokenizerInfo.free_text_masks).
"""

from __future__ import annotations

import numpy as np

from agent.grammar.tokenizer import CALL_CROSSING, TextState, TokenizerInfo

# A line start and the part of the island arrow (`=> `) after it: each is its own engine state.
LINE_STARTS = (b"\n", b"\n=", b"\n=>")


def free_text_state(text: bytes | bytearray, triggers: list[bytes]) -> TextState:
    """The key of the engine's free-text state; `text` is what was written since the last island."""
    if not text:
        return b"", True
    tail = bytes(text[-6:])
    if len(text) <= 2 and b"\n" + tail in LINE_STARTS:  # `=` or `=>` right after an island (a line start)
        return b"\n" + tail, False
    for piece in (tail[-3:], tail[-2:], tail[-1:]):
        if piece in LINE_STARTS:
            return piece, False
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
        if any(t.startswith(piece) for t in triggers):
            return piece, False
    return b"", False


def drop_crossers(words: np.ndarray, suffix: bytes, info: TokenizerInfo, triggers: list[bytes]) -> np.ndarray:
    """Clear (in place) tokens that would open a call, close it and run into its island in one piece
    (e.g. `("")\\n` after `SEARCH`): the island must come from the tool, never the model."""
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


def find_call_opening(window: bytes, triggers: list[bytes]) -> int:
    """Where the first call opening in `window` starts, or -1."""
    best = -1
    for trigger in triggers:
        pos = window.find(trigger)
        if pos >= 0 and (best < 0 or pos < best):
            best = pos
    return best
