"""Train the shipped demo model: a byte-level BPE tokenizer and a small Llama, from the corpus (seeded).

    python -m training.train --out agent/demo_model/weights --seed 0 [--data-cache DIR]

Steps: generate dialogues (agent.demo_model.corpus, in --workers processes) -> train the tokenizer
(digits one per token, special tokens for the chat format, `<|end|>` ends the assistant turn) ->
encode each dialogue with a loss mask (assistant text and its `<|end|>` at full weight, the islands
the shell inserts at `island_weight`, never the prompt) -> AdamW with warm-up and cosine decay ->
save_pretrained + MODEL_CARD.md.

The defaults are the shipped recipe, made for a GPU: about 1.5 minutes to make the data (16 cores)
and 3 minutes to train on one H100. On a CPU the same command runs for hours; `--minutes` stops it
early (and says so). The learning-rate schedule follows the step count only, and every
`checksum_every` steps the weights' sha256 is logged (training.json), so a rerun with the same
seed can be checked step by step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from training.corpus import SHIPPED_EVERY, WORLD_DIALOGUES, Dialogue, generate, worker_pool

SPECIAL_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>"]
EOS = "<|end|>"
PAD = "<|pad|>"
# The generation prompt opens the assistant turn; each turn ends with <|end|> (the EOS) and a newline.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{%- endif %}"
)


@dataclass
class TrainConfig:
    seed: int = 0
    dialogues: int = 320_000  # batch_size x steps = 240000 are used: no dialogue is seen twice
    vocab_size: int = 2048
    hidden_size: int = 320
    layers: int = 4
    heads: int = 8
    intermediate_size: int = 960
    max_len: int = 512
    batch_size: int = 64
    steps: int = 3750
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 0.01
    # A guard, not a schedule: the learning rate follows the step count only (reproducible); a run
    # that reaches this many minutes stops early and says so.
    minutes: float = 60.0
    # One thread: on the shared 2-core CPU, two threads contend with other processes and run 2-4x slower.
    threads: int = 1
    # Weight of the islands' tokens in the loss (0 = never trained on). The shell writes islands,
    # so the model never has to produce them; predicting them is a cheap auxiliary task that
    # rewards copying (an island repeats the searched name several times).
    island_weight: float = 0.3
    checksum_every: int = 250  # log a checksum of the weights (a rerun can be compared step by step)
    # "auto": the GPU when there is one. On CUDA the run is deterministic (deterministic kernels,
    # eager attention, no TF32), so a rerun on the same GPU and torch version is bit-identical.
    device: str = "auto"


# ---------------------------------------------------------------- tokenizer

def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE; digits are split one per token so the model copies numbers digit by digit."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"])
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


OWN, ISLAND = 1, 2  # loss mask codes (0: no loss)


def encode_dialogue(tokenizer, dialogue: Dialogue, max_len: int) -> tuple[list[int], list[int]] | None:
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


_ENCODE_JOB: tuple = ()  # (tokenizer, dialogues, max_len, prefix), inherited by forked workers


def _encode_range(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, codes, lengths) of dialogues[bounds[0]:bounds[1]] after the shared prefix; ones that
    do not fit max_len are left out."""
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


def encode_all(tokenizer, dialogues: list[Dialogue], max_len: int, workers: int) -> EncodedCorpus:
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
        _ENCODE_JOB = ()
    lengths = np.concatenate([part[2] for part in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    return EncodedCorpus(prefix, np.concatenate([part[0] for part in parts]),
                         np.concatenate([part[1] for part in parts]), offsets)


def _data_key(cfg: TrainConfig) -> str:
    """What the prepared data depends on: its settings and the code that makes it."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{cfg.seed}:{cfg.dialogues}:{cfg.vocab_size}:{cfg.max_len}".encode())
    for name in ("corpus.py", "kb_docs.py", "train.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def prepare_data(cfg: TrainConfig, log=print, workers: int = 1, cache: Path | None = None):
    """(tokenizer, EncodedCorpus, statistics): the corpus generated, the tokenizer trained, the
    dialogues encoded. With `cache`, the result is kept there and reused by runs of the same data."""
    from transformers import PreTrainedTokenizerFast

    slot = cache / f"data-{_data_key(cfg)}" if cache else None
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
    texts = []
    for d in dialogues[:8000]:
        texts += [m["content"] for m in d.messages()[1:]]
    texts += [dialogues[0].system] * 2000  # as often as in the data, so its words become tokens
    from training.kb_docs import build_kb

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


# ---------------------------------------------------------------- model and training

def build_model(cfg: TrainConfig, tokenizer, attn_implementation: str | None = None):
    from transformers import LlamaConfig, LlamaForCausalLM

    mc = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_len, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if attn_implementation:  # not saved: the shell picks its own attention kernel when it loads the model
        return LlamaForCausalLM._from_config(mc, attn_implementation=attn_implementation)
    return LlamaForCausalLM(mc)


def batches(lengths: list[int], batch_size: int, rng: random.Random):
    """Endless batches of similar length (little padding): shuffle, sort within pools, shuffle batches."""
    while True:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        pool = batch_size * 32
        groups = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
            groups += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(groups)
        yield from groups


def collate(corpus: EncodedCorpus, idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    items = [corpus.item(i) for i in idx]
    width = max(len(tok) for tok, _ in items)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    attn = torch.zeros((len(idx), width), dtype=torch.long)
    for row, (tok, codes) in enumerate(items):
        ids[row, :len(tok)] = torch.from_numpy(tok.astype(np.int64))
        attn[row, :len(tok)] = 1
        mask[row, :len(tok)] = torch.from_numpy(codes.astype(np.int64))
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": mask}


def prefix_loss(model, prefix: torch.Tensor, batch: dict[str, torch.Tensor],
                island_weight: float = 0.0, share_prefix: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to train on, mean loss on the model's own tokens) of dialogues after a shared system prefix.

    The loss is (sum over own tokens + island_weight * sum over island tokens) / own tokens.

    Every dialogue starts with the same system turn (about 40-60% of its tokens). With
    `share_prefix` (the CPU's way) its keys and values are computed once (with gradients) and
    repeated over the batch; otherwise (the GPU's way, where the repeat's backward would not be
    deterministic) it is fed with every row. Logits are computed only where there is a loss.
    """
    ids, attn, loss_mask = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
    n, p = ids.shape[0], prefix.shape[0]
    mask = torch.cat([torch.ones(n, p, dtype=attn.dtype, device=attn.device), attn], dim=1)
    if share_prefix:
        pre = model.model(input_ids=prefix[None], use_cache=True)
        cache = pre.past_key_values
        cache.batch_repeat_interleave(n)
        hidden = model.model(input_ids=ids, attention_mask=mask, past_key_values=cache,
                             use_cache=True).last_hidden_state
    else:
        full = torch.cat([prefix[None].expand(n, p), ids], dim=1)
        hidden = model.model(input_ids=full, attention_mask=mask, use_cache=False).last_hidden_state[:, p:]
    # The last prefix position predicts the first token of the rest, which never has a loss.
    codes = loss_mask[:, 1:]
    keep = (codes == OWN) | ((codes == ISLAND) & (island_weight > 0))
    logits = model.lm_head(hidden[:, :-1][keep])
    per_token = torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:][keep], reduction="none")
    own = codes[keep] == OWN
    n_own = own.sum().clamp(min=1)
    own_loss = per_token[own].sum() / n_own
    return own_loss + island_weight * per_token[~own].sum() / n_own, own_loss.detach()


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio over cfg.steps (by step only: reproducible)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def pick_device(name: str) -> torch.device:
    """The training device; on CUDA, switch on deterministic kernels before the first one runs."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda given, but torch sees no CUDA device")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


def device_label(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"1 {torch.cuda.get_device_name(device)} GPU"
    return f"{os.cpu_count()}-core CPU ({threads} torch thread{'s' if threads != 1 else ''})"


def train(cfg: TrainConfig, out: Path, log=print, workers: int = 1, data_cache: Path | None = None) -> dict:
    """Train and save the demo model into `out`; returns the training figures.

    `workers` processes make the data (the result is the same for any number); `data_cache` keeps
    the prepared data for the next run with the same data settings.
    """
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer, corpus, stats = prepare_data(cfg, log, workers, data_cache)
    prefix = torch.tensor(corpus.prefix, device=device)
    on_gpu = device.type == "cuda"

    model = build_model(cfg, tokenizer, attn_implementation="eager" if on_gpu else None).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters on {device_label(device, cfg.threads)}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    rng = random.Random(cfg.seed)
    stream = batches(corpus.lengths(), cfg.batch_size, rng)
    model.train()
    start = time.time()
    budget = cfg.minutes * 60
    step, seen_tokens, ema = 0, 0, None
    history = []
    pending: list[torch.Tensor] = []  # own losses not read back yet (reading each step would stall the GPU)
    checksums: dict[int, str] = {}

    def read_pending() -> float:
        """Fold the losses not read back yet into the moving average; the last one's value."""
        nonlocal ema
        losses = torch.stack(pending).tolist()
        pending.clear()
        for value in losses:
            ema = value if ema is None else 0.95 * ema + 0.05 * value
        return losses[-1]

    while step < cfg.steps:
        if time.time() - start > budget:
            log(f"WARNING: time guard of {cfg.minutes} min reached at step {step} of {cfg.steps}; "
                "the model is saved but a rerun on a faster machine will differ")
            break
        lr = lr_at(cfg, step)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = {k: v.to(device, non_blocking=True)
                 for k, v in collate(corpus, next(stream), tokenizer.pad_token_id).items()}
        loss, own_loss = prefix_loss(model, prefix, batch, cfg.island_weight, share_prefix=not on_gpu)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen_tokens += int(batch["attention_mask"].sum()) + len(corpus.prefix) * batch["input_ids"].shape[0]
        pending.append(own_loss)
        if step % 20 == 0 or step == 1 or step == cfg.steps:
            last = read_pending()
            elapsed = time.time() - start
            log(f"step {step}/{cfg.steps} loss {last:.4f} ema {ema:.4f} lr {lr:.2e} "
                f"{seen_tokens / elapsed:.0f} tok/s {elapsed / step * 1000:.0f} ms/step "
                f"elapsed {elapsed / 60:.1f} min, about {(cfg.steps - step) * elapsed / step / 60:.0f} min to go")
            history.append({"step": step, "loss": round(ema, 4)})
        if cfg.checksum_every and (step % cfg.checksum_every == 0 or step == cfg.steps):
            checksums[step] = weights_checksum(model)
            log(f"step {step} weights sha256 {checksums[step]}")
    if pending:
        read_pending()
    train_seconds = time.time() - start
    model.eval()
    model.to("cpu")
    save(model, tokenizer, out)
    figures = {
        "seed": cfg.seed, "steps": step, "train_minutes": round(train_seconds / 60, 1),
        "device": device_label(device, cfg.threads), "torch": torch.__version__,
        "tokens_seen": seen_tokens, "final_loss_ema": round(ema or 0.0, 4), "parameters": n_params,
        **stats, "vocab_size": len(tokenizer), "config": asdict(cfg), "loss_curve": history,
        "weights_sha256": checksums,
    }
    (out / "training.json").write_text(json.dumps(figures, indent=1))
    write_model_card(out, figures)
    log(f"saved to {out} after {train_seconds / 60:.1f} min")
    return figures


EVAL_START, EVAL_END = "<!-- eval -->", "<!-- /eval -->"
RETRAIN = """```bash
python -m training.train --out agent/demo_model/weights --seed 0
python bench/demo_eval.py --model agent/demo_model/weights --write-card
```"""


def write_model_card(out: Path, figures: dict, evaluation: str | None = None) -> Path:
    """MODEL_CARD.md: data, size, training time, evaluation figures (filled by bench/demo_eval.py), limits."""
    cfg = figures["config"]
    card = out / "MODEL_CARD.md"
    if evaluation is None and card.is_file():
        old = card.read_text()
        if EVAL_START in old and EVAL_END in old:
            evaluation = old.split(EVAL_START, 1)[1].split(EVAL_END, 1)[0].strip()
    evaluation = evaluation or "Not measured yet: run `python bench/demo_eval.py --write-card`."
    text = f"""# agent demo model

A small Llama-architecture causal LM trained from scratch by this project, so that the shell works
offline out of the box. It speaks the project's tool-call protocol (README.md): it answers
arithmetic through `CALL(calc, expr="...")`, questions about its knowledge base through
`SEARCH("name")`, opens documents with `LOAD(id)`, and says "I don't know" when the search finds
nothing. It knows nothing by itself: every fact comes from a tool's island.

## Data
- Knowledge base: {len(__import__("training.kb_docs", fromlist=["x"]).build_kb().entities)} generated documents about invented countries, cities, people, elements,
  companies, mountains and lakes (`agent/demo_model/kb/docs.jsonl`, made by
  `agent/demo_model/kb_docs.py`); 15% of the entities of each kind are held out of training.
- Dialogues: {figures["dialogues"]} generated dialogues (`agent/demo_model/corpus.py`, seed {figures["seed"]}) with
  1-3 exchanges: arithmetic (numbers of 1-6 digits, + - * / ** %, parentheses, words), facts,
  "tell me about", unknown names (`no results` -> "I don't know"), LOAD by id and as a follow-up,
  follow-up questions, notes and small talk. Islands come from the real tools.
- Phrasings: each relation is asked directly ("How high is X?"), by its noun ("Give me the height
  of X.") and indirectly ("I wonder how high X is."); a quarter of the questions come with a
  greeting or thanks around them. The evaluation's phrasings occur nowhere in training (a test
  checks it); these families were added after an evaluation showed answers falling back to a
  document's first sentence for phrasings unlike training's.
- Worlds: the dialogues are spread over {math.ceil(cfg["dialogues"] / WORLD_DIALOGUES)} knowledge bases of the same shape, {WORLD_DIALOGUES} dialogues
  each: freshly invented ones (no word of the shipped knowledge base) and, every {SHIPPED_EVERY}th, the shipped
  one without its held-out entities. A name or number is almost never seen twice, so the model
  cannot memorise facts: it learns to copy the name into SEARCH and the fact out of the island.
- {figures["corpus_tokens"]} tokens; {figures["loss_tokens"]} of them are the assistant's own text and end token (loss
  weight 1), island tokens have weight {cfg["island_weight"]} (an auxiliary copying task: the shell writes
  islands, the model never has to), prompts have none.

## Model
- LlamaForCausalLM: hidden {cfg["hidden_size"]}, {cfg["layers"]} layers, {cfg["heads"]} heads, MLP {cfg["intermediate_size"]},
  context {cfg["max_len"]} tokens, tied embeddings: {figures["parameters"] / 1e6:.2f}M parameters (float32).
- Tokenizer: byte-level BPE trained with `tokenizers`, {figures["vocab_size"]} tokens, digits one per token;
  chat template `<|system|>` / `<|user|>` / `<|assistant|>`, each turn ending with `<|end|>` (the EOS).

## Training
One seeded run on {figures.get("device", "a 2-core CPU")} (torch {figures.get("torch", "?")}):

{RETRAIN}

AdamW (lr {cfg["lr"]}, warm-up {cfg["warmup"]} steps, cosine decay to {cfg["min_lr_ratio"]} of it, by step count),
batch {cfg["batch_size"]} dialogues, {figures["steps"]} steps: {figures["train_minutes"]} minutes of training after
the data is made, {figures["tokens_seen"]} tokens seen; final training loss {figures["final_loss_ema"]}.
The run is deterministic on a given device and torch version (on CUDA: deterministic kernels,
eager attention, no TF32): `training.json` holds the weights' sha256 every {cfg["checksum_every"]} steps, so a
rerun can be compared checkpoint by checkpoint. Another device rounds differently; the
evaluation figures of such a rerun should still agree within a couple of points.
The recipe needs a GPU: making the data takes about 1.5 minutes on 16 cores, and on the 2-core
CPU one training step takes about 8.8 s (1 thread), so the 3750 steps would take about 9 hours;
the `--minutes` guard (60 by default) stops such a run early, and it says so.

## Evaluation (bench/demo_eval.py: held-out templates, values and entities)
{EVAL_START}
{evaluation}
{EVAL_END}

## Limits
- It only knows the protocol and the shapes of question it was trained on; free conversation is
  a handful of canned replies.
- Facts come only from the knowledge base; the search query is the name in the question, so a
  question without a name (e.g. "who invented the radio?") is not answered well.
- Copying is learned, not exact: long numbers and unseen names are sometimes miscopied, and for a
  question phrased unlike its training templates it may state another sentence of the right
  document (or a value it guesses) instead of the one asked for; see the evaluation above.
  Flag colours, jobs, products and inventions come from short fixed lists, so a guess looks
  plausible (a flag "red" where the island says "golden").
- Long results push old turns out of its {cfg["max_len"]}-token context; it was trained on 1-3 exchanges.
- The system prompt it was trained on is the one for the built-in tools; custom tools are listed
  but the model was never trained to call them.
"""
    card.write_text(text)
    return card


def weights_checksum(model) -> str:
    """sha256 of every parameter's bytes in order: equal checksums mean bit-identical weights."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save(model, tokenizer, out: Path) -> None:
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="directory for the weights (save_pretrained)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=TrainConfig.minutes,
                    help="time guard: stop (and say so) after this many minutes of training")
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--dialogues", type=int, default=TrainConfig.dialogues)
    ap.add_argument("--layers", type=int, default=TrainConfig.layers)
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--threads", type=int, default=TrainConfig.threads)
    ap.add_argument("--warmup", type=int, default=TrainConfig.warmup)
    ap.add_argument("--island-weight", type=float, default=TrainConfig.island_weight,
                    help="weight of the tool results' tokens in the loss (0: not trained on)")
    ap.add_argument("--hidden-size", type=int, default=TrainConfig.hidden_size)
    ap.add_argument("--heads", type=int, default=TrainConfig.heads)
    ap.add_argument("--intermediate-size", type=int, default=TrainConfig.intermediate_size)
    ap.add_argument("--device", default=TrainConfig.device, help="auto (the GPU if there is one), cpu, cuda")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                    help="processes that make the data (the data does not depend on it)")
    ap.add_argument("--data-cache", type=Path, help="keep the prepared data here and reuse it in the next run")
    ap.add_argument("--prepare-only", action="store_true", help="make the data (into --data-cache) and stop")
    args = ap.parse_args(argv)
    if args.prepare_only and args.data_cache is None:
        ap.error("--prepare-only needs --data-cache")
    if not args.prepare_only and args.out is None:
        ap.error("--out is required")
    cfg = TrainConfig(seed=args.seed, minutes=args.minutes, steps=args.steps, dialogues=args.dialogues,
                      layers=args.layers, batch_size=args.batch_size, lr=args.lr,
                      threads=args.threads, warmup=args.warmup,
                      island_weight=args.island_weight, hidden_size=args.hidden_size, heads=args.heads,
                      intermediate_size=args.intermediate_size, device=args.device)

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    if args.prepare_only:
        prepare_data(cfg, log, args.workers, args.data_cache)
        return
    train(cfg, args.out, log=log, workers=args.workers, data_cache=args.data_cache)


if __name__ == "__main__":
    main()
