"""Held-out evaluation of the shipped demo model: greedy (the baseline) against tree search, same run.

Usage: python bench/demo_eval.py [--model DIR] [--strategies greedy,tree] [--seed 0] [--write-card]
Cases (training/evaluate.py): arithmetic with other templates and numbers, questions about
held-out knowledge-base entities with other templates, unknown names, LOAD by id, small talk.
Each answer goes through agent.turn.ChatSession (grammar, real tools, islands). Rates: right tool
chosen, well-formed calls, correct final answers. Prints a table, then one JSON line with
each strategy's figures and tree_vs_greedy_correct_ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Benchmarks run from a checkout: the tiny-model builder (tests/) and training/ are not installed with
# the package. Appended, so the installed `agent` (with agent.tools, agent.sessions) still comes first.
CHECKOUT = Path(__file__).resolve().parent.parent
sys.path += [str(CHECKOUT / "tests"), str(CHECKOUT)]

import torch

from agent.demo_model import demo_model_dir
from agent.model.runtime import load_model
from training.evaluate import eval_cases, run_eval
from training.model_card import write_model_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(demo_model_dir()))
    parser.add_argument("--strategies", default="greedy,tree")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation cases")
    parser.add_argument("--limit", type=int, default=0, help="only the first N cases (0 = all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write-card", action="store_true", help="put the figures into the model's MODEL_CARD.md")
    parser.add_argument("--verbose", action="store_true", help="print every wrong answer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model(args.model, device="cpu")
    cases = eval_cases(seed=args.seed)
    if args.limit:
        cases = cases[: args.limit]
    log = (lambda msg: print(msg, file=sys.stderr)) if args.verbose else None
    results = {}
    for strategy in [s.strip() for s in args.strategies.split(",") if s.strip()]:
        results[strategy] = run_eval(lm, strategy, cases, log=log)

    print(f"{'strategy':10} {'cases':>5} {'right tool':>10} {'well-formed':>11} {'correct':>8} {'seconds':>8}")
    for name, r in results.items():
        print(f"{name:10} {r['cases']:5d} {r['right_tool_pct']:9.1f}% {r['well_formed_pct']:10.1f}% "
              f"{r['correct_pct']:7.1f}% {r['seconds']:8.1f}")
        print(f"{'':10} correct by kind: {r['correct_by_kind_pct']}")
    summary = {name: {k: v for k, v in r.items() if k != "failures"} for name, r in results.items()}
    for name, r in results.items():
        summary[name]["failures"] = [{k: f[k] for k in ("prompt", "expected", "response")} for f in r["failures"]][:10]
    if "greedy" in results and "tree" in results and results["greedy"]["correct_pct"]:
        ratio = results["tree"]["correct_pct"] / results["greedy"]["correct_pct"]
        summary["tree_vs_greedy_correct_ratio"] = round(ratio, 3)
    summary["model"] = args.model
    summary["machine"] = "2-core CPU (shared)"
    summary["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    if args.write_card:
        model_dir = Path(args.model)
        figures = json.loads((model_dir / "training.json").read_text())
        lines = [f"`python bench/demo_eval.py --seed {args.seed}` on {summary['machine']}, {summary['date']}, "
                 f"{len(cases)} held-out cases:", "",
                 "| strategy | right tool | well-formed calls | correct answers | by kind (correct %) |",
                 "|---|---|---|---|---|"]
        for name, r in results.items():
            lines.append(f"| {name} | {r['right_tool_pct']}% | {r['well_formed_pct']}% | {r['correct_pct']}% | "
                         f"{', '.join(f'{k} {v}' for k, v in r['correct_by_kind_pct'].items())} |")
        write_model_card(model_dir, figures, "\n".join(lines))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
