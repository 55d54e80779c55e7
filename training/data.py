"""The prepared training data: corpus generated, tokenizer trained, dialogues encoded; cached by a key."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerFast

from training.config import TrainConfig
from training.corpus import generate
from training.encoding import OWN, EncodedCorpus, encode_all
from training.kb_docs import build_kb
from training.tokenizer import train_tokenizer

# The modules whose code makes the prepared data (the corpus, its knowledge bases, the island
# format, the tokenizer, the encoding, this module): a change to any of them gives a new cache slot.
DATA_MODULES = ("training.dialogue", "training.phrasings", "training.variations", "training.worlds", "training.corpus",
                "training.kb_docs", "training.tokenizer", "training.encoding", "training.data",
                "agent.grammar.protocol")


def data_key(cfg: TrainConfig) -> str:
    """What the prepared data depends on: its settings and the code that makes it."""
    digest = hashlib.sha256(f"{cfg.seed}:{cfg.dialogues}:{cfg.vocab_size}:{cfg.max_len}".encode())
    if cfg.init:  # a fine-tune encodes with the starting model's tokenizer
        digest.update((Path(cfg.init) / "tokenizer.json").read_bytes())
    for name in DATA_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"data key: module {name} not found")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:16]


def prepare_data(cfg: TrainConfig, log: Callable[[str], None] = print, workers: int = 1,
                 cache: Path | None = None) -> tuple[PreTrainedTokenizerFast, EncodedCorpus, dict[str, int]]:
    """(tokenizer, EncodedCorpus, statistics): the corpus generated, the tokenizer trained (or, for a
    fine-tune, the starting model's read), the dialogues encoded. With `cache`, the result is kept
    there and reused by runs of the same data."""
    slot = cache / f"data-{data_key(cfg)}" if cache else None
    if slot is not None and (slot / "corpus.npz").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(slot)
        arrays = np.load(slot / "corpus.npz")
        stats = json.loads((slot / "stats.json").read_text())
        log(f"data: reused {slot}")
        return tokenizer, EncodedCorpus(arrays["prefix"].tolist(), arrays["ids"], arrays["codes"],
                                        arrays["offsets"]), stats
    t0 = time.time()
    dialogues = generate(cfg.dialogues, seed=cfg.seed, split="train", workers=workers)
    log(f"corpus: {len(dialogues)} dialogues in {time.time() - t0:.0f}s")
    if cfg.init:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(cfg.init)
    else:
        texts: list[str] = []
        for d in dialogues[:8000]:
            texts += [m["content"] for m in d.messages()[1:]]
        texts += [dialogues[0].system] * 2000  # as often as in the data, so its words become tokens
        texts += [f"{doc['title']}: {doc['text']}" for doc in build_kb().docs()]
        tokenizer = train_tokenizer(texts, cfg.vocab_size)
    t0 = time.time()
    corpus = encode_all(tokenizer, dialogues, cfg.max_len, workers)
    n_prefix = len(corpus.prefix)
    stats = {"dialogues": len(corpus), "corpus_tokens": int(corpus.offsets[-1]) + n_prefix * len(corpus),
             "loss_tokens": int((corpus.codes == OWN).sum())}
    log(f"tokenizer: {len(tokenizer)} tokens; encoded {stats['dialogues']} dialogues in {time.time() - t0:.0f}s, "
        f"{stats['corpus_tokens']} tokens ({stats['loss_tokens']} with loss), "
        f"mean length {stats['corpus_tokens'] / len(corpus):.0f}")
    if slot is not None:
        tmp = slot.with_name(slot.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(tmp)
        np.savez(tmp / "corpus.npz", prefix=np.array(corpus.prefix, dtype=np.int32), ids=corpus.ids,
                 codes=corpus.codes, offsets=corpus.offsets)
        (tmp / "stats.json").write_text(json.dumps(stats))
        os.replace(tmp, slot)
    return tokenizer, corpus, stats
