"""Train the shipped demo model: a byte-level BPE tokenizer and a small Llama, from the corpus (seeded).

    python -m training.train --out agent/demo_model/weights --seed 0 [--data-cache DIR]

Steps: generate dialogues (training.corpus, in --workers processes) -> train the tokenizer
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
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from agent.model.runtime import cache_keyword_of
from training.config import TrainConfig
from training.data import prepare_data
from training.encoding import ISLAND, OWN, EncodedCorpus
from training.model_card import write_model_card
from training.tokenizer import make_config_portable


def build_model(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase,
                attn_implementation: str | None = None) -> LlamaForCausalLM:
    mc = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_len, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if attn_implementation:  # not saved: the shell picks its own attention kernel when it loads the model
        return LlamaForCausalLM._from_config(mc, attn_implementation=attn_implementation)
    return LlamaForCausalLM(mc)


def batches(lengths: list[int], batch_size: int, rng: random.Random) -> Iterator[list[int]]:
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


def prefix_loss(model: LlamaForCausalLM, prefix: torch.Tensor, batch: dict[str, torch.Tensor],
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
        # the cache keyword this transformers takes (`cache` in newer ones, which warn about the old name)
        hidden = model.model(input_ids=ids, attention_mask=mask, **{cache_keyword_of(model.model): cache},
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


def train(cfg: TrainConfig, out: Path, log: Callable[[str], None] = print, workers: int = 1,
          data_cache: Path | None = None) -> dict[str, Any]:
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

    if cfg.init:
        model = LlamaForCausalLM.from_pretrained(cfg.init, dtype=torch.float32,
                                                 attn_implementation="eager" if on_gpu else None).to(device)
        log(f"fine-tune: starting from {cfg.init}")
    else:
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
    history: list[dict[str, float]] = []
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
        "weights_sha256": checksums, "started_from": started_from(cfg),
    }
    (out / "training.json").write_text(json.dumps(figures, indent=1))
    write_model_card(out, figures)
    log(f"saved to {out} after {train_seconds / 60:.1f} min")
    return figures


def started_from(cfg: TrainConfig) -> dict[str, Any] | None:
    """For a fine-tune, what it started from: the starting model's own training figures (its
    training.json without the loss curve), so the card can give both stages; None from scratch."""
    if not cfg.init:
        return None
    record = Path(cfg.init) / "training.json"
    before = json.loads(record.read_text()) if record.is_file() else {}
    before.pop("loss_curve", None)
    return {"path": cfg.init, "training": before}


def weights_checksum(model: LlamaForCausalLM) -> str:
    """sha256 of every parameter's bytes in order: equal checksums mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    make_config_portable(out)


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
    ap.add_argument("--init", type=Path,
                    help="fine-tune: start from this saved model (weights and tokenizer) instead of from scratch")
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
                      intermediate_size=args.intermediate_size, device=args.device,
                      init=str(args.init) if args.init else "")
    if cfg.init:  # the weights and the tokenizer they were trained with (the data is encoded with it)
        missing = [name for name in ("config.json", "tokenizer.json") if not (Path(cfg.init) / name).is_file()]
        if missing:
            ap.error(f"--init {cfg.init}: no saved model there ({', '.join(missing)} missing)")

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    if args.prepare_only:
        prepare_data(cfg, log, args.workers, args.data_cache)
        return
    train(cfg, args.out, log=log, workers=args.workers, data_cache=args.data_cache)


if __name__ == "__main__":
    main()
