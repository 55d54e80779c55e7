"""Dialogues -> token ids and loss codes: what the model is trained on, encoded in worker processes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from training.dialogue import Dialogue
from training.pool import worker_pool
from training.tokenizer import EOS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

OWN, ISLAND = 1, 2  # loss mask codes (0: no loss)


def encode_dialogue(tokenizer: PreTrainedTokenizerBase, dialogue: Dialogue,
                    max_len: int) -> tuple[list[int], list[int]] | None:
    """Token ids and loss mask (OWN: the model's own assistant text or its <|end|>; ISLAND: a tool
    result the shell writes; 0: system and user turns).

    Pieces are encoded separately at the boundaries where the shell also cuts (a call's `)`, an
    island, the turn's end), which gives the same ids as encoding the whole rendered chat.
    Exchanges that would pass max_len are dropped; None if not even the first one fits.
    """
    def enc(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    ids = enc(f"<|system|>\n{dialogue.system}{EOS}\n")
    mask = [0] * len(ids)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    kept = 0
    for ex in dialogue.exchanges:
        x_ids = enc(f"<|user|>\n{ex.user}{EOS}\n<|assistant|>\n")
        x_mask = [0] * len(x_ids)
        for text, is_island in ex.segments:
            piece = enc(text)
            x_ids += piece
            x_mask += [ISLAND if is_island else OWN] * len(piece)
        x_ids += [eos_id] + enc("\n")
        x_mask += [OWN, 0]
        if len(ids) + len(x_ids) > max_len:
            break
        ids += x_ids
        mask += x_mask
        kept += 1
    return (ids, mask) if kept else None


@dataclass
class EncodedCorpus:
    """Every dialogue's token ids and loss codes after the shared system turn, end to end."""

    prefix: list[int]  # the system turn every dialogue starts with
    ids: np.ndarray  # int32
    codes: np.ndarray  # int8: OWN, ISLAND or 0
    offsets: np.ndarray  # int64, dialogue i is [offsets[i], offsets[i + 1])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> list[int]:
        return np.diff(self.offsets).tolist()

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.codes[a:b]


# (tokenizer, dialogues, max_len, prefix) of the running encode_all: forked workers inherit it.
_ENCODE_JOB: tuple[PreTrainedTokenizerBase, list[Dialogue], int, list[int]] | None = None


def _encode_range(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, codes, lengths) of dialogues[bounds[0]:bounds[1]] after the shared prefix; ones that
    do not fit max_len are left out."""
    if _ENCODE_JOB is None:
        raise RuntimeError("_encode_range runs only inside encode_all")
    tokenizer, dialogues, max_len, prefix = _ENCODE_JOB
    ids: list[int] = []
    codes: list[int] = []
    lengths: list[int] = []
    for dialogue in dialogues[bounds[0]:bounds[1]]:
        encoded = encode_dialogue(tokenizer, dialogue, max_len)
        if encoded is None:
            continue
        if encoded[0][:len(prefix)] != prefix:
            raise AssertionError("every dialogue must start with the same system turn")
        ids += encoded[0][len(prefix):]
        codes += encoded[1][len(prefix):]
        lengths.append(len(encoded[0]) - len(prefix))
    return np.array(ids, dtype=np.int32), np.array(codes, dtype=np.int8), np.array(lengths, dtype=np.int64)


def encode_all(tokenizer: PreTrainedTokenizerBase, dialogues: list[Dialogue], max_len: int,
               workers: int) -> EncodedCorpus:
    """encode_dialogue over all dialogues (in `workers` processes; the result does not depend on it)."""
    global _ENCODE_JOB
    prefix = tokenizer.encode(f"<|system|>\n{dialogues[0].system}{EOS}\n", add_special_tokens=False)
    chunk = 2000
    ranges = [(i, min(i + chunk, len(dialogues))) for i in range(0, len(dialogues), chunk)]
    _ENCODE_JOB = (tokenizer, dialogues, max_len, prefix)
    if workers > 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the Rust pool would not survive the fork
    try:
        with worker_pool(workers) as pool:
            parts = pool.map(_encode_range, ranges) if pool else [_encode_range(r) for r in ranges]
    finally:
        _ENCODE_JOB = None
    lengths = np.concatenate([part[2] for part in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    return EncodedCorpus(prefix, np.concatenate([part[0] for part in parts]),
                         np.concatenate([part[1] for part in parts]), offsets)
