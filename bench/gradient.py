"""Does the gradient find better responses? Samplers of p(x)^alpha against the unadjusted refinement, at equal compute.

Usage: python bench/gradient.py [--model demo|smollm2|PATH] [--prompts 12] [--alpha 4] [--compute 16]
                                [--max-new-tokens 40] [--grad-steps 2] [--plot FILE] [--enumerable-only]

Every arm starts from the same candidate per prompt (greedy under the turn's grammar, tools on,
side effects declined) and may spend the same compute: `--compute` times the cost of one forward
pass over the start response, counted in response tokens run through the model, a backward token
counted as `r` forward tokens, r measured here on this model (fwd+bwd time / fwd time - 1 on the
start responses, prompt cached). Arms:
- suffix-mh: agent.decoding.mcmc (strategy `mcmc`): suffix resampling, proposals at 1/alpha, exact MH;
- gwg: agent.decoding.token_moves `gradient`: Gibbs-with-Gradients single-token proposals, exact MH;
- model-1tok: agent.decoding.token_moves `model`: single-token proposals from the model's own
  next-token distribution at 1/alpha, exact MH (the gradient-free twin of gwg);
- refine: the unadjusted `tree+grad` refinement (agent.decoding.refine.refine_result) repeated from the
  best so far (Langevin + HMC, --grad-steps each, keep if the exact score rises), counted generously
  as if it cached the prompt (it re-runs it).
Figures per arm over prompts: proposals per prompt (suffix-mh: those that offered another response),
the share of proposals outside the target's support (an island changed, the grammar broken, a loop: rejected
without a forward pass), acceptance (accepted / proposals; refine: rounds that improved / rounds), share
of prompts whose final response scores above the start, mean gain of the
shared score (mean log-prob per model token) with a 95% interval (t), task accuracy of the final
response against the start's (the expected value appears in the response, tool results included),
wall seconds per prompt. A PNG plots mean gain against compute per arm (--plot).
Then, on a tiny random model with an enumerable space (27 responses, tests/enumerable.py), the total
variation between each arm's output and the exact p^alpha (alpha 2, as in tests/test_power_sampling.py).
Prints markdown tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CHECKOUT = Path(__file__).resolve().parent.parent
sys.path += [str(CHECKOUT / "tests"), str(CHECKOUT), str(CHECKOUT / "bench")]

import torch

from agent.config import DecodeConfig
from agent.decoding.decode import response_text
from agent.decoding.mcmc import SuffixSampler, walk
from agent.decoding.refine import refine_result
from agent.decoding.results import Candidate, SearchResult
from agent.decoding.scoring import score_parts, sequence_logprobs
from agent.decoding.search import search_response
from agent.decoding.token_moves import MoveStats, SequenceScorer, move_step
from agent.decoding.token_tree import TokenTree
from agent.model.chat_format import prompt_token_ids
from agent.model.runtime import LoadedModel, load_model
from agent.tooling.registry import default_registry
from agent.turn import ChatSession
from training.evaluate import contains_value

ARMS = ("suffix-mh", "gwg", "model-1tok", "refine")
GRID = (1, 2, 4, 8, 16, 32)  # compute checkpoints, in start-response forward passes
TIE = 1e-4  # score differences below this are float noise (incremental vs full-pass log-probs)


def cases(model: str, count: int) -> list[tuple[str, str]]:
    """(prompt, expected value): arithmetic, whose right value is checkable in the response."""
    if model == "demo":
        from training.evaluate import eval_cases
        found = [(c.prompt, str(c.expected)) for c in eval_cases(seed=1, n_calc=count, n_fact=0, n_unknown=0,
                                                                  n_load=0, n_chat=0)]
    else:
        rows = [json.loads(line) for line in (CHECKOUT / "bench" / "real_model_prompts.jsonl").open()]
        found = [(r["prompt"], str(r["value"])) for r in rows if r.get("kind") == "arith"]
    return found[:count]


def t95(n: int) -> float:
    table = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26, 12: 2.20, 16: 2.13,
             20: 2.09, 30: 2.05}
    return next((v for k, v in sorted(table.items()) if n <= k), 1.96)


def interval(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    half = t95(len(values)) * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, half


def measure_r(lm: LoadedModel, prompt_ids: list[int], ids: list[int], islands: list[bool]) -> float:
    """Backward cost in forward passes on this model: (fwd+bwd time) / fwd time - 1, prompt cached."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3):
        for grad in (False, True):
            scorer = SequenceScorer(lm, prompt_ids, islands, ended_with_eos=False)  # fresh: nothing remembered
            started = time.perf_counter()
            scorer.evaluate(ids, grad=grad)
            times[grad].append(time.perf_counter() - started)
    return max(0.0, min(times[True]) / min(times[False]) - 1.0)


def run_arm(arm: str, lm: LoadedModel, prompt_ids: list[int], start: Candidate, make: Callable[[], Any],
            config: DecodeConfig, budget: float, r: float, seed: int) -> dict[str, Any]:
    """One arm from `start` until `budget` compute is spent: trajectory [(cost, score)], final text and score."""
    generator = torch.Generator().manual_seed(seed)
    ended = start.eos_logprob is not None
    unit = start.new_tokens + 1
    trajectory: list[tuple[float, float]] = [(0.0, start.score)]
    started = time.perf_counter()
    proposals = accepted = invalid = 0
    text, score = start.text, start.score
    # Proposals that cost no forward pass (a path the tree holds, a change the grammar refuses) still end.
    cap = 40 * budget // unit
    if arm == "suffix-mh":
        tree = TokenTree.open(lm, prompt_ids, config, make)
        leaf = walk(tree, start.token_ids, start.island_mask, ended)
        if leaf is None:
            return {"skipped": "the tree does not reproduce the start"}
        base = tree.token_evaluations
        sampler = SuffixSampler(tree, config.alpha, 1.0 / config.alpha, generator, budget=10**9)
        while tree.token_evaluations - base < budget and sampler.stats.proposals < cap:
            leaf = sampler.run(leaf, 1)
            trajectory.append((tree.token_evaluations - base, leaf.mean))
        proposals = sampler.stats.proposals - sampler.stats.unchanged
        accepted, invalid = sampler.stats.accepted, sampler.stats.invalid
        final = tree.candidate(leaf, "mcmc")
        text, score = final.text, leaf.mean
    elif arm in ("gwg", "model-1tok"):
        move = "gradient" if arm == "gwg" else "model"
        scorer = SequenceScorer(lm, prompt_ids, start.island_mask, ended_with_eos=ended, make_constraint=make,
                                max_new_tokens=config.max_new_tokens)
        state = scorer.evaluate(start.token_ids, grad=move == "gradient")
        if state is None:
            return {"skipped": "the start is outside the target's support"}
        count = start.new_tokens + (1 if ended else 0)
        base = scorer.forward_tokens + r * scorer.backward_tokens
        stats = MoveStats()
        while scorer.forward_tokens + r * scorer.backward_tokens - base < budget and stats.proposals < cap:
            before = stats.proposals
            state = move_step(scorer, state, move, config.alpha, 1.0 / config.alpha, generator, stats)
            if stats.proposals == before:
                break  # nothing can change
            trajectory.append((scorer.forward_tokens + r * scorer.backward_tokens - base, state.log_p / count))
        proposals, accepted, invalid = stats.proposals, stats.accepted, stats.invalid
        text = response_text(lm.tokenizer, list(state.ids), keep_special=True)
        score = state.log_p / count
    else:  # refine: the unadjusted tree+grad refinement, repeated from the best so far
        current, cost = start, 0.0
        refine_config = config.replace(strategy="tree+grad", top_candidates=1)
        while cost < budget:
            found = SearchResult(best=current, candidates=[current])
            out = refine_result(lm, prompt_ids, refine_config, found, make_constraint=make)
            cost += unit * (out.forward_passes + r * out.backward_passes)
            proposals += 1
            if out.best is not current and out.best.score > current.score:
                accepted += 1
                current = out.best
            trajectory.append((cost, current.score))
            if out.forward_passes == 0:
                break
        text, score = current.text, current.score
    return {"trajectory": trajectory, "text": text, "score": score, "proposals": proposals, "accepted": accepted,
            "invalid": invalid, "seconds": time.perf_counter() - started}


def at(trajectory: list[tuple[float, float]], cost: float) -> float:
    """The state's score once `cost` was spent (the last state reached within it)."""
    value = trajectory[0][1]
    for spent, score in trajectory:
        if spent > cost:
            break
        value = score
    return value


def model_runs(args: argparse.Namespace) -> dict[str, Any]:
    if args.model == "demo":
        from agent.demo_model import demo_model_dir
        path, tool_choice = str(demo_model_dir()), "auto"
    elif args.model == "smollm2":
        from real_models import default_model
        path, tool_choice = default_model(), "required"  # SmolLM2 never calls a tool under auto
    else:
        path, tool_choice = args.model, "auto"
    lm = load_model(path, device="cpu")
    config = DecodeConfig(strategy="greedy", max_new_tokens=args.max_new_tokens, alpha=args.alpha,
                          grad_steps=args.grad_steps, tool_choice=tool_choice)
    session = ChatSession(lm, default_registry(), config, confirm=lambda record: False)

    def make() -> Any:
        # Side effects are declined (confirm says no), never deferred: a declined call's island is the same
        # on every replay, so responses with one stay comparable across arms and nothing is ever written.
        return session.make_constraint(defer_side_effects=False)

    rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    starts: list[dict[str, Any]] = []
    r = None
    for index, (prompt, expected) in enumerate(cases(args.model, args.prompts)):
        messages = [{"role": "system", "content": session.system_prompt}, {"role": "user", "content": prompt}]
        prompt_ids = prompt_token_ids(lm.tokenizer, messages, tools=session.tool_format.tools)
        start = search_response(lm, prompt_ids, config, make_constraint=make).best
        if start.new_tokens == 0 or start.finish_reason in ("budget", "interrupted", "tool"):
            continue
        if r is None:
            r = measure_r(lm, prompt_ids, start.token_ids, start.island_mask)
        budget = args.compute * (start.new_tokens + 1)
        starts.append({"score": start.score, "right": contains_value(start.text, expected), "tokens": start.new_tokens})
        for arm in ARMS:
            out = run_arm(arm, lm, prompt_ids, start, make, config.replace(strategy="mcmc"), budget, r,
                          args.seed + index)
            if "skipped" in out:
                print(f"  {arm} skipped on {prompt!r}: {out['skipped']}", file=sys.stderr)
                continue
            out.update(start_score=start.score, unit=start.new_tokens + 1, expected=expected,
                       right=contains_value(out["text"], expected), start_right=contains_value(start.text, expected))
            rows[arm].append(out)
        print(f"  prompt {index + 1} done", file=sys.stderr)
    return {"model": args.model, "path": path, "r": r, "rows": rows, "starts": starts, "tool_choice": tool_choice}


def summarize(run: dict[str, Any], compute: int) -> list[dict[str, Any]]:
    table = []
    for arm, rows in run["rows"].items():
        if not rows:
            continue
        gains = [row["score"] - row["start_score"] for row in rows]
        mean, half = interval(gains)
        table.append({
            "arm": arm, "prompts": len(rows),
            "acceptance": sum(r["accepted"] for r in rows) / max(1, sum(r["proposals"] for r in rows)),
            "proposals_per_prompt": statistics.fmean(r["proposals"] for r in rows),
            "invalid": sum(r["invalid"] for r in rows) / max(1, sum(r["proposals"] for r in rows)),
            "improved": sum(g > TIE for g in gains) / len(rows), "worse": sum(g < -TIE for g in gains) / len(rows),
            "mean_gain": mean, "gain_95": half,
            "accuracy": sum(r["right"] for r in rows) / len(rows),
            "start_accuracy": sum(r["start_right"] for r in rows) / len(rows),
            "seconds": statistics.fmean(r["seconds"] for r in rows),
            "curve": {k: statistics.fmean(at(r["trajectory"], k * r["unit"]) - r["start_score"] for r in rows)
                      for k in GRID if k <= compute},
        })
    return table


def print_table(run: dict[str, Any], table: list[dict[str, Any]], compute: int) -> None:
    print(f"\n### {run['model']} (tool choice {run['tool_choice']}; backward/forward cost ratio r = {run['r']:.2f}; "
          f"compute {compute}x one forward pass over the start response)\n")
    print("| arm | prompts | proposals/prompt | outside support | acceptance | improved | worse "
          "| mean gain (nats/token, 95%) | task accuracy (start) | s/prompt |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['arm']} | {row['prompts']} | {row['proposals_per_prompt']:.1f} | {row['invalid']:.0%} | "
              f"{row['acceptance']:.1%} | "
              f"{row['improved']:.0%} | {row['worse']:.0%} | {row['mean_gain']:+.3f} ± {row['gain_95']:.3f} | "
              f"{row['accuracy']:.0%} ({row['start_accuracy']:.0%}) | {row['seconds']:.1f} |")


def enumerable_tv(steps: int) -> dict[str, float]:
    """TV between each arm's output and the exact p^alpha on the tiny model's 27-response space."""
    from enumerable import ChoiceConstraint, exact_power, total_variation
    from tiny_model import build_tiny_llama
    alpha, length = 2.0, 3
    lm = load_model(str(build_tiny_llama(Path(tempfile.mkdtemp()) / "tiny")), device="cpu")
    tok = lm.tokenizer
    prompt = tok("hello there, how are you?")["input_ids"]
    choices = [tok.encode(word)[0] for word in ("yes", "no", " fox")]
    target = exact_power(lm, prompt, choices, length, False, alpha)
    model_p = exact_power(lm, prompt, choices, length, False, 1.0)

    def make() -> ChoiceConstraint:
        return ChoiceConstraint(choices, length, lm.vocab_size, lm.eos_token_ids, allow_eos=False)

    out = {"model p itself": total_variation(target, {k: round(v * 1e9) for k, v in model_p.items()})}
    config = DecodeConfig(strategy="mcmc", max_new_tokens=length, alpha=alpha, grad_steps=2, top_candidates=1)
    tree = TokenTree.open(lm, prompt, config, make)
    sampler = SuffixSampler(tree, alpha, 1 / alpha, torch.Generator().manual_seed(0), budget=10**6)
    counts: collections.Counter[Any] = collections.Counter()
    state = sampler.initial()
    for _ in range(steps):
        state = sampler.run(state, 1)
        counts[(tuple(state.response_ids()[0]), False)] += 1
    out["suffix-mh"] = total_variation(target, counts)
    for arm, move in (("gwg", "gradient"), ("model-1tok", "model")):
        scorer = SequenceScorer(lm, prompt, [False] * length, ended_with_eos=False, make_constraint=make,
                                max_new_tokens=length)
        ev = scorer.evaluate([choices[0]] * length, grad=True)
        stats, generator, counts = MoveStats(), torch.Generator().manual_seed(0), collections.Counter()
        for _ in range(steps):
            ev = move_step(scorer, ev, move, alpha, 1 / alpha, generator, stats)
            counts[(ev.ids, False)] += 1
        out[arm] = total_variation(target, counts)
    # refine: starts drawn from the model's p over the space, each refined once (its output distribution)
    keys = list(model_p)
    draws = torch.multinomial(torch.tensor([model_p[k] for k in keys]), 300, replacement=True,
                              generator=torch.Generator().manual_seed(0))
    counts = collections.Counter()
    for i in draws.tolist():
        ids = list(keys[i][0])
        lps = sequence_logprobs(lm, prompt, ids)[0]
        cand = Candidate.scored(response_text(tok, ids, True), ids, [False] * length, lps,
                                score_parts(lps, [False] * length, ids), strategy="greedy", finish_reason="grammar")
        best = refine_result(lm, prompt, config, SearchResult(best=cand, candidates=[cand]), make_constraint=make).best
        counts[(tuple(best.token_ids), False)] += 1
    out["refine"] = total_variation(target, counts)
    return out


def plot(runs: list[tuple[dict[str, Any], list[dict[str, Any]]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, (run, table) in zip(axes[0], runs, strict=True):
        for row in table:
            ax.plot(list(row["curve"]), list(row["curve"].values()), marker="o", label=row["arm"])
        ax.set_xscale("log", base=2)
        low, high = ax.get_ylim()
        if high - low < 0.02:  # flat curves: show float noise as flat, not as a trend
            ax.set_ylim(-0.01, 0.01)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_title(f"{run['model']} (r = {run['r']:.2f})")
        ax.set_xlabel("compute (forward passes over the start response; backward = r)")
        ax.set_ylabel("mean gain of the score (nats/token)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None, help="demo, smollm2 or a path (repeatable)")
    parser.add_argument("--prompts", type=int, nargs="+", default=[12], help="prompts per model (one per --model)")
    parser.add_argument("--alpha", type=float, default=4.0)
    parser.add_argument("--compute", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--grad-steps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tv-steps", type=int, default=20000)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--enumerable-only", action="store_true")
    args = parser.parse_args()
    models = args.model or ["demo"]
    runs = []
    if not args.enumerable_only:
        for i, model in enumerate(models):
            one = argparse.Namespace(**{**vars(args), "model": model,
                                        "prompts": args.prompts[min(i, len(args.prompts) - 1)]})
            run = model_runs(one)
            table = summarize(run, args.compute)
            print_table(run, table, args.compute)
            runs.append((run, table))
        if args.plot is not None and runs:
            plot(runs, args.plot)
    tv = enumerable_tv(args.tv_steps)
    print(f"\n### Enumerable space (tiny random model, 27 responses, alpha 2): total variation to exact p^alpha, "
          f"{args.tv_steps} steps (refine: 300 refined draws from p)\n")
    print("| arm | TV |\n|---|---|")
    for arm, value in tv.items():
        print(f"| {arm} | {value:.3f} |")
    print(json.dumps({"alpha": args.alpha, "compute": args.compute, "tv": {k: round(v, 4) for k, v in tv.items()},
                      "models": [{"model": run["model"], "r": run["r"],
                                  "arms": [{k: v for k, v in row.items()} for row in table]}
                                 for run, table in runs]}))


if __name__ == "__main__":
    main()
