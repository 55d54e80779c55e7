"""Search strategies side by side on one model and a fixed prompt set, at a matched forward-pass budget.

Usage: python bench/search.py [--model DIR] [--new-tokens 32] [--prompts 32] [--grad-steps 8]

Model: --model, else the shipped demo model (agent/demo_model/weights) when it exists, else a tiny
Llama built with tests/tiny_model.build_tiny_llama and trained for a few minutes on templated chat
dialogues (bench/search_model.py; cached under $AGENT_BENCH_CACHE or /tmp).
Strategies: greedy, beam-4, best-of-8, tree and tree+grad. Budget matching: tree and tree+grad get,
per prompt, twice the forward passes beam-4 spent on it (the acceptance bound); refinement passes
come on top and are reported apart. No grammar is applied (plain language-model search).
Figures per strategy: mean log-prob per model token of the chosen response (agent.decoding.scoring, without
the guard penalty), share of empty or degenerate answers, forward/backward passes, wall time, KV
reuse ratio (model token evaluations / tree tokens; "no-sharing" shows what re-running every node's
prefix would have cost), and for refinement the share of candidates improved and the mean gain.
Prints a markdown table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Benchmarks run from a checkout: the tiny-model builder (tests/) and training/ are not installed with
# the package. Appended, so the installed `agent` (with agent.tools, agent.sessions) still comes first.
CHECKOUT = Path(__file__).resolve().parent.parent
sys.path += [str(CHECKOUT / "tests"), str(CHECKOUT)]

from agent.config import DecodeConfig
from agent.decoding.scoring import score_parts
from agent.decoding.search import search_response
from agent.model.chat_format import prompt_token_ids
from agent.model.runtime import LoadedModel, load_model

PROMPTS = [
    "What is the capital of France?", "What is the capital of Peru?", "capital of Norway", "capital of Japan",
    "What is the capital of Mars?", "capital of Atlantis", "What is 7 * 12?", "What is 123 * 4567?",
    "Tell me about the fox.", "Tell me about cats.", "Tell me a story about tools.", "hello, how are you?",
    "hello? (rust)", "What is the weather in Lima?", "Why is the sky blue?", "Who wrote Hamlet?",
    "Explain recursion briefly.", "What is Python?", "Search for the capital of Kenya.", "Load document 12.",
    "Compute 19 * 3.", "Is it raining in Oslo?", "Give me three colours.", "What is a dog?",
    "Translate 'hello' to Spanish.", "What day is it today?", "List two numbers.", "What is the lazy dog?",
    "capital of Egypt", "What is 2 + 2?", "Say something nice.", "What tools do you have?",
]


def pick_model(arg: str | None) -> tuple[str, str]:
    if arg:
        return arg, f"given: {arg}"
    demo = Path(__file__).resolve().parent.parent / "agent" / "demo_model" / "weights"
    if (demo / "model.safetensors").exists():
        return str(demo), "shipped demo model (agent/demo_model/weights)"
    from search_model import build_bench_model  # bench/ is on sys.path (this script's folder)

    cache = Path(os.environ.get("AGENT_BENCH_CACHE", "/tmp")) / "agent-bench-search-model"
    path = build_bench_model(cache)
    return str(path), "tiny Llama (build_tiny_llama, hidden 96, 3 layers) trained on templated dialogues"


def run_one(lm: LoadedModel, prompt: list[int], config: DecodeConfig) -> dict[str, Any]:
    started = time.perf_counter()
    result = search_response(lm, prompt, config)
    wall = time.perf_counter() - started
    best = result.best
    parts = score_parts(best.logprobs, best.island_mask, best.token_ids, eos_logprob=best.eos_logprob, text=best.text)
    nodes = 0
    no_sharing = 0
    if result.tree is not None:
        for node in result.tree.subtree():
            if node.parent is not None and node.kv is not None:
                nodes += len(node.tokens)
                no_sharing += len(prompt) + node.depth
    refined = [c for c in result.candidates if c.refined]
    return {
        "logprob": parts.mean_logprob, "bad": parts.empty or parts.degenerate, "fwd": result.forward_passes,
        "bwd": result.backward_passes, "wall": wall, "kv": result.kv_reuse_ratio if result.tree is not None else None,
        "no_sharing": (no_sharing / nodes) if nodes else None,
        "tried": result.refinement.get("tried", 0), "improved": result.refinement.get("improved", 0),
        "gains": [c.score_after - c.score_before for c in refined if c.accepted],
        "tried_gains": [max(0.0, c.score_after - c.score_before) for c in refined],
        "tokens": best.new_tokens, "text": best.text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--grad-steps", type=int, default=8)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    model_dir, model_note = pick_model(args.model)
    lm = load_model(model_dir, device="cpu")
    base = DecodeConfig(max_new_tokens=args.new_tokens, seed=0, grad_steps=args.grad_steps, top_candidates=4)
    names = ["greedy", "beam-4", "best-of-8", "tree", "tree+grad"]
    rows: dict[str, list[dict]] = {n: [] for n in names}
    started = time.perf_counter()
    for text in PROMPTS[: args.prompts]:
        prompt = prompt_token_ids(lm.tokenizer, [{"role": "user", "content": text}])
        rows["greedy"].append(run_one(lm, prompt, base.replace(strategy="greedy")))
        beam = run_one(lm, prompt, base.replace(strategy="beam", beam_width=4, budget=args.new_tokens + 1))
        rows["beam-4"].append(beam)
        rows["best-of-8"].append(run_one(lm, prompt, base.replace(strategy="best-of-n", num_samples=8,
                                                                   temperature=1.0, budget=args.new_tokens + 1)))
        matched = 2 * beam["fwd"]
        tree = run_one(lm, prompt, base.replace(strategy="tree", beam_width=4, budget=matched))
        rows["tree"].append(tree)
        grad = run_one(lm, prompt, base.replace(strategy="tree+grad", beam_width=4, budget=matched))
        rows["tree+grad"].append(grad)
        if args.verbose:
            print(f"{text!r}: beam {beam['logprob']:.3f} tree {tree['logprob']:.3f} grad {grad['logprob']:.3f} "
                  f"| {tree['text']!r}", file=sys.stderr)
    total = time.perf_counter() - started

    def mean(values: list[float]) -> float:
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else float("nan")

    summary = {}
    for name in names:
        r = rows[name]
        tried = sum(x["tried"] for x in r)
        improved = sum(x["improved"] for x in r)
        gains = [g for x in r for g in x["gains"]]
        summary[name] = {
            "mean_logprob_per_token": round(mean([x["logprob"] for x in r]), 4),
            "empty_or_degenerate_rate": round(sum(x["bad"] for x in r) / len(r), 4),
            "forward_passes": round(mean([x["fwd"] for x in r]), 2),
            "backward_passes": round(mean([x["bwd"] for x in r]), 2),
            "wall_s": round(mean([x["wall"] for x in r]), 3),
            "kv_reuse_ratio": None if name == "greedy" else round(mean([x["kv"] for x in r]), 4),
            "kv_ratio_without_sharing": None if name == "greedy" else round(mean([x["no_sharing"] for x in r]), 2),
            "tokens": round(mean([x["tokens"] for x in r]), 1),
            "refined_tried": tried,
            "refined_improved_share": round(improved / tried, 4) if tried else None,
            "refined_mean_gain_when_improved": round(mean(gains), 4) if gains else None,
            "refined_mean_gain_per_tried": round(sum(gains) / tried, 4) if tried else None,
        }
    beam, tree = summary["beam-4"], summary["tree"]
    wins = sum(t["logprob"] > b["logprob"] + 1e-9 for t, b in zip(rows["tree"], rows["beam-4"]))
    losses = sum(t["logprob"] < b["logprob"] - 1e-9 for t, b in zip(rows["tree"], rows["beam-4"]))
    print(f"model: {model_note}; {len(rows['greedy'])} prompts; max_new_tokens {args.new_tokens}; "
          f"machine: {os.cpu_count()}-core CPU; total {total:.0f}s\n")
    print("| strategy | mean log-prob/token | empty/degenerate | fwd passes | bwd passes | wall s | KV reuse "
          "| (no sharing) | refined improved | mean gain |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        s = summary[name]
        kv = "-" if s["kv_reuse_ratio"] is None else f"{s['kv_reuse_ratio']:.2f}"
        ns = "-" if s["kv_ratio_without_sharing"] is None else f"{s['kv_ratio_without_sharing']:.1f}"
        ref = "-" if s["refined_improved_share"] is None else \
            f"{s['refined_improved_share']:.0%} of {s['refined_tried']}"
        gain = "-" if s["refined_mean_gain_when_improved"] is None else f"{s['refined_mean_gain_when_improved']:+.3f}"
        print(f"| {name} | {s['mean_logprob_per_token']:.4f} | {s['empty_or_degenerate_rate']:.0%} | "
              f"{s['forward_passes']:.1f} | {s['backward_passes']:.1f} | {s['wall_s']:.2f} | "
              f"{kv} | {ns} | {ref} | {gain} |")
    ratio_passes = tree["forward_passes"] / beam["forward_passes"]
    print(f"\ntree vs beam-4: log-prob/token {tree['mean_logprob_per_token']:.4f} vs "
          f"{beam['mean_logprob_per_token']:.4f} (tree better on {wins}, worse on {losses} of {len(rows['tree'])}); "
          f"forward passes ratio {ratio_passes:.2f}")
    print(json.dumps({
        "bench": "search", "model": model_note, "prompts": len(rows["greedy"]), "max_new_tokens": args.new_tokens,
        "machine": f"{os.cpu_count()}-core CPU", "strategies": summary,
        "tree_vs_beam4": {"logprob_delta": round(tree["mean_logprob_per_token"] - beam["mean_logprob_per_token"], 4),
                          "forward_pass_ratio": round(ratio_passes, 3), "wins": wins, "losses": losses},
        "acceptance": {
            "tree_ge_beam4": tree["mean_logprob_per_token"] >= beam["mean_logprob_per_token"] - 1e-9,
            "passes_le_2x": ratio_passes <= 2.0,
            "tree_zero_bad": tree["empty_or_degenerate_rate"] == 0.0,
            "kv_reuse_le_1_1": (tree["kv_reuse_ratio"] or 0) <= 1.1,
        },
    }))


if __name__ == "__main__":
    main()
