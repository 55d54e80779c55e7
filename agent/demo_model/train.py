"""Train the shipped demo model: a byte-level BPE tokenizer and a small Llama, from the corpus (seeded).

    python -m agent.demo_model.train --out agent/demo_model/weights --seed 0 [--minutes 40] [--steps N]

Steps: generate dialogues (agent.demo_model.corpus) -> train the tokenizer (digits one per token,
special tokens for the chat format, `<|end|>` ends the assistant turn) -> encode each dialogue
with a loss mask (assistant text and its `<|end|>` at full weight, the islands the shell inserts
at `island_weight`, never the prompt) -> AdamW with warm-up and cosine decay -> save_pretrained + MODEL_CARD.md.
The learning-rate schedule follows the step count only, and every `checksum_every` steps the
weights' sha256 is logged (training.json), so a rerun with the same seed can be checked step by step.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from agent.demo_model.corpus import SHIPPED_EVERY, WORLD_DIALOGUES, Dialogue, generate

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
    dialogues: int = 34_000  # batch_size x steps = 32000 are used: each dialogue is seen about once
    vocab_size: int = 2048
    hidden_size: int = 256
    layers: int = 4
    heads: int = 8
    intermediate_size: int = 768
    max_len: int = 512
    batch_size: int = 16
    steps: int = 2000
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup: int = 40
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


# ---------------------------------------------------------------- model and training

def build_model(cfg: TrainConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    mc = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_len, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(mc)


def batches(encoded: list[tuple[list[int], list[int]]], batch_size: int, rng: random.Random):
    """Endless batches of similar length (little padding): shuffle, sort within pools, shuffle batches."""
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        pool = batch_size * 32
        groups = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lambda i: len(encoded[i][0]))
            groups += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(groups)
        yield from groups


def collate(encoded, idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(encoded[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    attn = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        tok, m = encoded[i]
        ids[row, :len(tok)] = torch.tensor(tok)
        attn[row, :len(tok)] = 1
        mask[row, :len(tok)] = torch.tensor(m)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": mask}


def prefix_loss(model, prefix: torch.Tensor, batch: dict[str, torch.Tensor],
                island_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to train on, mean loss on the model's own tokens); the system prefix computed once per batch.

    The loss is (sum over own tokens + island_weight * sum over island tokens) / own tokens.

    Every dialogue starts with the same system turn (about 40-60% of its tokens), so its keys
    and values are computed once (with gradients) and repeated over the batch; logits are
    computed only at the positions that have a loss.
    """
    ids, attn, loss_mask = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
    n = ids.shape[0]
    pre = model.model(input_ids=prefix[None], use_cache=True)
    cache = pre.past_key_values
    cache.batch_repeat_interleave(n)
    mask = torch.cat([torch.ones(n, prefix.shape[0], dtype=attn.dtype), attn], dim=1)
    hidden = model.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True).last_hidden_state
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


def train(cfg: TrainConfig, out: Path, log=print) -> dict:
    """Train and save the demo model into `out`; returns the training figures."""
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    dialogues = generate(cfg.dialogues, seed=cfg.seed, split="train")
    log(f"corpus: {len(dialogues)} dialogues in {time.time() - t0:.0f}s")

    texts = []
    for d in dialogues[:8000]:
        texts += [m["content"] for m in d.messages()[1:]]
    texts += [dialogues[0].system] * 2000  # as often as in the data, so its words become tokens
    from agent.demo_model.kb_docs import build_kb

    texts += [f"{doc['title']}: {doc['text']}" for doc in build_kb().docs()]
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    encoded = [e for d in dialogues if (e := encode_dialogue(tokenizer, d, cfg.max_len)) is not None]
    prefix_ids = tokenizer.encode(f"<|system|>\n{dialogues[0].system}{EOS}\n", add_special_tokens=False)
    if any(e[0][:len(prefix_ids)] != prefix_ids for e in encoded):
        raise AssertionError("every dialogue must start with the same system turn")
    prefix = torch.tensor(prefix_ids)
    rest = [(e[0][len(prefix_ids):], e[1][len(prefix_ids):]) for e in encoded]
    n_tokens = sum(len(e[0]) for e in encoded)
    n_loss = sum(sum(1 for m in e[1] if m == OWN) for e in encoded)
    log(f"tokenizer: {len(tokenizer)} tokens; encoded {len(encoded)} dialogues, {n_tokens} tokens "
        f"({n_loss} with loss), mean length {n_tokens / len(encoded):.0f}")

    model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    rng = random.Random(cfg.seed)
    stream = batches(rest, cfg.batch_size, rng)
    model.train()
    start = time.time()
    budget = cfg.minutes * 60
    step, seen_tokens, ema = 0, 0, None
    history = []
    checksums: dict[int, str] = {}
    while step < cfg.steps:
        if time.time() - start > budget:
            log(f"WARNING: time guard of {cfg.minutes} min reached at step {step} of {cfg.steps}; "
                "the model is saved but a rerun on a faster machine will differ")
            break
        lr = lr_at(cfg, step)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = collate(rest, next(stream), tokenizer.pad_token_id)
        loss, own_loss = prefix_loss(model, prefix, batch, cfg.island_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen_tokens += int(batch["attention_mask"].sum()) + len(prefix_ids) * batch["input_ids"].shape[0]
        ema = own_loss.item() if ema is None else 0.95 * ema + 0.05 * own_loss.item()
        if step % 20 == 0 or step == 1:
            rate = seen_tokens / (time.time() - start)
            log(f"step {step}/{cfg.steps} loss {own_loss.item():.4f} ema {ema:.4f} lr {lr:.2e} "
                f"{rate:.0f} tok/s elapsed {(time.time() - start) / 60:.1f} min")
            history.append({"step": step, "loss": round(ema, 4)})
        if cfg.checksum_every and (step % cfg.checksum_every == 0 or step == cfg.steps):
            checksums[step] = weights_checksum(model)
            log(f"step {step} weights sha256 {checksums[step]}")
    train_seconds = time.time() - start
    model.eval()
    save(model, tokenizer, out)
    figures = {
        "seed": cfg.seed, "steps": step, "train_minutes": round(train_seconds / 60, 1),
        "tokens_seen": seen_tokens, "final_loss_ema": round(ema or 0.0, 4), "parameters": n_params,
        "dialogues": len(encoded), "corpus_tokens": n_tokens, "loss_tokens": n_loss,
        "vocab_size": len(tokenizer), "config": cfg.__dict__, "loss_curve": history,
        "weights_sha256": checksums,
    }
    (out / "training.json").write_text(json.dumps(figures, indent=1))
    write_model_card(out, figures)
    log(f"saved to {out} after {train_seconds / 60:.1f} min")
    return figures


EVAL_START, EVAL_END = "<!-- eval -->", "<!-- /eval -->"
RETRAIN = """```bash
python -m agent.demo_model.train --out agent/demo_model/weights --seed 0
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
- Knowledge base: {len(__import__("agent.demo_model.kb_docs", fromlist=["x"]).build_kb().entities)} generated documents about invented countries, cities, people, elements,
  companies, mountains and lakes (`agent/demo_model/kb/docs.jsonl`, made by
  `agent/demo_model/kb_docs.py`); 15% of the entities of each kind are held out of training.
- Dialogues: {figures["dialogues"]} generated dialogues (`agent/demo_model/corpus.py`, seed {figures["seed"]}) with
  1-3 exchanges: arithmetic (numbers of 1-6 digits, + - * / ** %, parentheses, words), facts,
  "tell me about", unknown names (`no results` -> "I don't know"), LOAD by id and as a follow-up,
  follow-up questions, notes and small talk. Islands come from the real tools.
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
One seeded run on a 2-core CPU ({cfg["threads"]} torch thread):

{RETRAIN}

AdamW (lr {cfg["lr"]}, warm-up {cfg["warmup"]} steps, cosine decay to {cfg["min_lr_ratio"]} of it, by step count),
batch {cfg["batch_size"]} dialogues, {figures["steps"]} steps, the shared system turn computed once per batch:
{figures["train_minutes"]} minutes, {figures["tokens_seen"]} tokens seen; final training loss {figures["final_loss_ema"]}.
The run is deterministic on a given machine and torch version: `training.json` holds the weights'
sha256 every {cfg["checksum_every"]} steps, so a rerun can be compared checkpoint by checkpoint.

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
    ap.add_argument("--out", type=Path, required=True, help="directory for the weights (save_pretrained)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=TrainConfig.minutes, help="training time budget")
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
    args = ap.parse_args(argv)
    cfg = TrainConfig(seed=args.seed, minutes=args.minutes, steps=args.steps, dialogues=args.dialogues,
                      layers=args.layers, batch_size=args.batch_size, lr=args.lr,
                      threads=args.threads, warmup=args.warmup,
                      island_weight=args.island_weight, hidden_size=args.hidden_size, heads=args.heads,
                      intermediate_size=args.intermediate_size)
    train(cfg, args.out, log=lambda msg: print(time.strftime("%H:%M:%S"), msg, flush=True))


if __name__ == "__main__":
    main()
