"""Strategies at equal wall time (issue 15): each search gets, per prompt, `ratio` times the seconds greedy took
on that prompt (DecodeConfig.time_limit: the search ends there with its best answer so far), so what is
compared is what a user waiting that long would get. Beam and best-of-n run 8 rows (beam-8, best-of-8);
every search also stops at the forward-pass budget. Shared by bench/fresh_phrasings.py (demo model) and
bench/real_models.py (SmolLM2). The tree and mcmc keep their own defaults (the tree's dives 4 wide).

Paired figures against greedy on the same prompts: the difference in the share right, with a 95% interval
from the normal approximation to the per-prompt differences (-1, 0, +1), and the prompts fixed and broken.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

WIDTH = 8  # beam-8 and best-of-8: the fair baselines of the issue


def greedy_first(strategies: list[str], ratio: float) -> list[str]:
    """The strategies with greedy first (its seconds on a prompt set the searches' limit there); a ratio
    needs greedy among them."""
    if ratio > 0 and "greedy" not in strategies:
        raise SystemExit("--time-ratio compares with greedy: add greedy to --strategies")
    return sorted(strategies, key=lambda s: s != "greedy")


def search_config(config: Any, strategy: str, budget: int, greedy_seconds: float | None, ratio: float) -> Any:
    """`config` for `strategy`: greedy as it is; a search with the budget (beam and best-of-n 8 rows) and,
    with a ratio and greedy's seconds on this prompt, the wall-time limit."""
    if strategy in ("greedy", "sample"):
        return config.replace(strategy=strategy, budget=0)
    limit = ratio * greedy_seconds if ratio > 0 and greedy_seconds is not None else 0.0
    config = config.replace(strategy=strategy, budget=budget, time_limit=limit)
    if strategy == "beam":
        return config.replace(beam_width=WIDTH)
    return config.replace(num_samples=WIDTH) if strategy == "best-of-n" else config  # tree, mcmc: their defaults


def paired_difference(base: Sequence[bool], other: Sequence[bool], z: float = 1.96) -> tuple[float, float, float]:
    """Mean of other - base over paired prompts and its 95% interval (normal approximation)."""
    diffs = [int(o) - int(b) for b, o in zip(base, other, strict=True)]
    n = len(diffs)
    if n == 0:
        return (0.0, -1.0, 1.0)
    mean = sum(diffs) / n
    spread = statistics.stdev(diffs) if n > 1 else 0.0
    half = z * spread / math.sqrt(n)
    return (mean, max(-1.0, mean - half), min(1.0, mean + half))


def compare_to_greedy(outcomes: dict[str, list[Any]], right: Callable[[Any], bool],
                      ratio: float) -> list[dict[str, Any]]:
    """Per strategy: share right, difference to greedy [95% CI], fixed/broken prompts, median wall-time ratio
    to greedy, passes; printed as a markdown table and returned for the JSON line."""
    base = outcomes["greedy"]
    base_hits = [right(o) for o in base]
    rows = []
    for strategy, outs in outcomes.items():
        hits = [right(o) for o in outs]
        mean, lo, hi = paired_difference(base_hits, hits)
        ratios = [o.seconds / b.seconds for o, b in zip(outs, base, strict=True) if b.seconds > 0]
        rows.append({"strategy": strategy, "n": len(outs), "right": sum(hits),
                     "diff_vs_greedy": round(mean, 4), "diff_ci95": [round(lo, 4), round(hi, 4)],
                     "fixed": sum(h and not b for h, b in zip(hits, base_hits, strict=True)),
                     "broken": sum(b and not h for h, b in zip(hits, base_hits, strict=True)),
                     "median_time_ratio": round(statistics.median(ratios), 2) if ratios else None,
                     "passes_per_prompt": round(sum(o.passes for o in outs) / len(outs), 1) if outs else 0.0})
    limit = f"{ratio:g}x greedy's seconds per prompt" if ratio > 0 else "no time limit"
    print(f"\nAt equal wall time ({limit}; beam and best-of-n {WIDTH} rows), paired against greedy:\n")
    print("| strategy | right | vs greedy [95% CI] | fixed | broken | wall time / greedy (median) | passes/prompt |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['right']}/{r['n']} | {r['diff_vs_greedy']:+.1%} "
              f"[{r['diff_ci95'][0]:+.1%}, {r['diff_ci95'][1]:+.1%}] | {r['fixed']} | {r['broken']} "
              f"| {r['median_time_ratio']} | {r['passes_per_prompt']:.0f} |")
    return rows
