"""The demo model on phrasings it never saw: `bench/fresh_phrasings.jsonl` under greedy and tree.

    python bench/fresh_phrasings.py [--model PATH] [--strategies greedy,tree] [--budget 64] [--prompts FILE]
                                    [--max-new-tokens 256] [--limit N] [--records FILE] [--time-ratio R]
                                    [--ground-numbers auto|on|off]

The prompts (80, in 16 phrasing families, 4 families marked held_out) were written from the README
and `agent kb list`/`agent kb search` alone, before the model was run on them and without reading
the training templates; so were the second (60, 12 families) and third (60, 12 families) sets, each
committed before any model ran on it. Each line: id, family, kind (arith, kb, load, unknown, chat), prompt, expect.

Each prompt gets a fresh ChatSession (no history) with the default registry and the shipped knowledge
base (a fresh copy in a temp dir, seeded from the demo model's documents). Judging, per kind:
- arith: the first call is calc and the text after the last tool result holds the exact value;
- kb: the first call is SEARCH (or LOAD) and the text after the last result holds `expect`
  (a list: any one of them), case-insensitive, as a whole word;
- load: the first call is LOAD of the document `expect`;
- unknown: the first call is SEARCH and the answer says it does not know;
- chat: no call and a sensible sentence.
Garbage: no call and no sensible sentence (digit soup, a repeated word, punctuation runs).
Each wrong answer gets one failure mode: no_call (answered in words where a tool was needed), wrong_tool
(another tool first, e.g. note or SEARCH for arithmetic), wrong_args (the right tool, but no result of
its calls holds the expected value: a misread name, `**` for `*`, the wrong id), wrong_answer (a result
held it, the text after it does not), needless_call (small talk that called a tool), garbage.
Prints markdown tables (per kind, per family, overall, held-out) with 95% Wilson intervals, the
prompts each strategy fixes for the other, seconds per prompt, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent.config import GROUND_NUMBERS
from equal_time import compare_to_greedy, greedy_first, search_config
from proportions import wilson
from real_models import after_islands

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the model is shipped
# One torch thread: on the shared 2-core machine two threads make the demo model ~20x slower.
os.environ.setdefault("AGENT_THREADS", "1")

PROMPTS = Path(__file__).with_name("fresh_phrasings.jsonl")
KINDS = ("arith", "kb", "load", "unknown", "chat")
FAILURES = ("no_call", "wrong_tool", "wrong_args", "wrong_answer", "needless_call", "garbage")
DONT_KNOW = ("don't know", "do not know", "dont know", "not sure", "no information", "couldn't find",
             "could not find")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
WORD = re.compile(r"[A-Za-z][A-Za-z']*")


@dataclass
class Outcome:
    """What one prompt under one strategy came to."""

    id: str
    family: str
    kind: str
    held_out: bool
    strategy: str
    right_tool: bool
    correct: bool
    garbage: bool
    failure: str  # "" when correct, else one of FAILURES
    calls: list[dict[str, Any]]
    answer: str  # the text after the last tool result
    response: str
    seconds: float
    passes: int


def has_number(text: str, value: str) -> bool:
    """Whether a number equal to `value` is written in text (7006652, 7,006,652, 125.0 for 125)."""
    want = float(value)
    for token in NUMBER.findall(text):
        try:
            got = float(token.replace(",", ""))
        except ValueError:
            continue
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            return True
    return False


def has_phrase(text: str, expect: str | list[str]) -> bool:
    """Any expected phrase as whole words, case-insensitive."""
    options = expect if isinstance(expect, list) else [expect]
    return any(re.search(rf"(?<!\w){re.escape(o)}(?!\w)", text, re.IGNORECASE) for o in options)


def is_sensible(text: str) -> bool:
    """A plain sentence rather than garbage: words, mostly letters, no word or bigram looping."""
    text = text.strip()
    words = [w.lower() for w in WORD.findall(text)]
    if len(words) < 2:
        return False
    visible = [c for c in text if not c.isspace()]
    if sum(c.isalpha() for c in visible) / len(visible) < 0.6:  # digit soup, punctuation runs
        return False
    for n in (1, 2):  # "the the the the", "is the is the is the"
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        for i in range(len(grams) - 3 * n):
            if grams[i] == grams[i + n] == grams[i + 2 * n] == grams[i + 3 * n]:
                return False
    return True


def failure_mode(kind: str, expect: Any, calls: list[Any], right_tool: bool, garbage: bool) -> str:
    """Why a wrong answer is wrong (the first cause along the way from the question to the text)."""
    if garbage:
        return "garbage"
    if kind == "chat":
        return "needless_call" if calls else "garbage"
    if not calls:
        return "no_call"
    if not right_tool:
        return "wrong_tool"
    results = " ".join(c.result or "" for c in calls)
    if kind == "load" or (kind == "arith" and not has_number(results, str(expect))):
        return "wrong_args"
    if kind == "kb" and not has_phrase(results, expect):
        return "wrong_args"
    return "wrong_answer"


def judge(case: dict[str, Any], strategy: str, result: Any) -> Outcome:
    calls = list(result.tool_calls)
    first = calls[0] if calls else None
    tool = first.tool if first else None
    answer = after_islands(result.response, calls)
    kind, expect = case["kind"], case.get("expect")
    if kind == "arith":
        right_tool = tool == "calc"
        correct = right_tool and has_number(answer, str(expect))
    elif kind == "kb":
        right_tool = tool in ("search", "load")
        correct = right_tool and has_phrase(answer, expect)
    elif kind == "load":
        right_tool = tool == "load"
        correct = right_tool and str(first.args.get("id")) == str(expect)
    elif kind == "unknown":
        right_tool = tool == "search"
        correct = right_tool and any(p in answer.lower().replace("\u2019", "'") for p in DONT_KNOW)
    else:  # chat: no call, a sensible sentence
        right_tool = first is None
        correct = right_tool and is_sensible(result.response)
    garbage = first is None and not is_sensible(result.response)
    failure = "" if correct else failure_mode(kind, expect, calls, right_tool, garbage)
    return Outcome(case["id"], case["family"], kind, bool(case.get("held_out")), strategy, right_tool, correct,
                   garbage, failure, [{"tool": c.tool, "args": c.args, "error": c.error} for c in calls],
                   answer.strip(), result.response, result.seconds, result.forward_passes)


def rate(outs: list[Outcome], pick: Callable[[Outcome], bool] = lambda o: o.correct) -> dict[str, Any]:
    hits, n = sum(pick(o) for o in outs), len(outs)
    low, high = wilson(hits, n)
    return {"hits": hits, "n": n, "rate": round(hits / n, 4) if n else None, "ci95": [round(low, 4), round(high, 4)]}


def cell(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "-"
    return f"{r['hits']}/{r['n']} {r['rate']:.0%} [{r['ci95'][0]:.0%}, {r['ci95'][1]:.0%}]"


def print_groups(title: str, key: Callable[[Outcome], str], outcomes: dict[str, list[Outcome]],
                 order: list[str]) -> dict[str, dict[str, Any]]:
    """One table: a row per group, per strategy its correct share (95% Wilson) and garbage count."""
    strategies = list(outcomes)
    print(f"\n{title}\n")
    print("| group | n | " + " | ".join(f"{s} correct [95% CI] | {s} garbage" for s in strategies) + " |")
    print("|---|---|" + "---|---|" * len(strategies))
    table: dict[str, dict[str, Any]] = {}
    for group in order:
        row = {s: [o for o in outs if key(o) == group] for s, outs in outcomes.items()}
        n = len(next(iter(row.values())))
        if not n:
            continue
        table[group] = {s: {**rate(outs), "garbage": sum(o.garbage for o in outs)} for s, outs in row.items()}
        print(f"| {group} | {n} | " + " | ".join(f"{cell(table[group][s])} | {table[group][s]['garbage']}"
                                                  for s in strategies) + " |")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model directory (default: the shipped demo model)")
    parser.add_argument("--strategies", default="greedy,tree")
    parser.add_argument("--budget", type=int, default=64, help="forward passes for search strategies")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="as `agent run` (default 256)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts (0 = all)")
    parser.add_argument("--prompts", type=Path, default=PROMPTS,
                        help="the prompt file (default bench/fresh_phrasings.jsonl; bench/fresh_phrasings_2.jsonl "
                             "and bench/fresh_phrasings_3.jsonl are the second and third sets, each held out as "
                             "a whole when it was written)")
    parser.add_argument("--time-ratio", type=float, default=0.0,
                        help="each search may take this many times greedy's seconds on the prompt (bench/"
                             "equal_time.py; greedy runs first; 0 = no limit, the budget alone)")
    parser.add_argument("--records", default=None, help="write every prompt's outcome here (JSONL)")
    parser.add_argument("--ground-numbers", choices=GROUND_NUMBERS, default="auto",
                        help="whether a call's numbers lean to the question's (agent.decoding.grounding)")
    args = parser.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    strategies = greedy_first(strategies, args.time_ratio)
    if not args.prompts.is_file():
        parser.error(f"--prompts {args.prompts}: no such file")
    cases = [json.loads(line) for line in args.prompts.read_text().splitlines() if line.strip()]
    if args.limit:
        cases = cases[: args.limit]

    from agent import demo_model  # the model stack loads after the arguments are known good
    from agent.config import DecodeConfig
    from agent.model.runtime import load_model
    from agent.tooling.registry import default_registry
    from agent.turn import ChatSession

    # a fresh knowledge base that seeds itself from the shipped documents: the user's own is untouched
    os.environ["AGENT_KB"] = str(Path(tempfile.mkdtemp(prefix="fresh-kb-")) / "kb.sqlite")
    model = args.model or str(demo_model.demo_model_dir())
    label = Path(args.model).name if args.model else "demo model"
    started = time.perf_counter()
    lm = load_model(model)
    print(f"model {model} loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    registry = default_registry()
    outcomes: dict[str, list[Outcome]] = {s: [] for s in strategies}
    greedy_seconds: dict[str, float] = {}
    runs = [(s, case) for case in cases for s in strategies]
    for strategy, case in tqdm(runs, desc="prompts", file=sys.stderr):
        decode = DecodeConfig(max_new_tokens=args.max_new_tokens, ground_numbers=args.ground_numbers)
        config = search_config(decode, strategy, args.budget, greedy_seconds.get(case["id"]), args.time_ratio)
        session = ChatSession(lm, registry, config, confirm=lambda call: False)
        outcome = judge(case, strategy, session.ask(case["prompt"]))
        outcomes[strategy].append(outcome)
        if strategy == "greedy":
            greedy_seconds[case["id"]] = outcome.seconds

    if args.records:
        with open(args.records, "w") as f:
            for outs in outcomes.values():
                for o in outs:
                    f.write(json.dumps(asdict(o)) + "\n")
    import torch
    import transformers

    families = list(dict.fromkeys(c["family"] for c in cases))
    held = {c["family"] for c in cases if c.get("held_out")}
    print(f"\n{label}: {len(cases)} prompts, {len(families)} families ({len(held)} held out); "
          f"budget {args.budget} forward passes for search, at most {args.max_new_tokens} new tokens; "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    by_kind = print_groups("Correct by kind:", lambda o: o.kind, outcomes, list(KINDS))
    by_family = print_groups("Correct by family (* held out):",
                             lambda o: o.family + (" *" if o.family in held else ""), outcomes,
                             [f + (" *" if f in held else "") for f in families])
    split = print_groups("Overall:", lambda o: "held-out families" if o.held_out else "other families",
                         outcomes, ["other families", "held-out families"])
    overall = {s: {**rate(outs), "right_tool": rate(outs, lambda o: o.right_tool),
                   "garbage": sum(o.garbage for o in outs),
                   "seconds_per_prompt": round(sum(o.seconds for o in outs) / len(outs), 3),
                   "passes_per_prompt": round(sum(o.passes for o in outs) / len(outs), 1)}
               for s, outs in outcomes.items()}
    print("\n| strategy | correct [95% CI] | right tool [95% CI] | garbage | s/prompt | passes/prompt |")
    print("|---|---|---|---|---|---|")
    for s, r in overall.items():
        print(f"| {s} | {cell(r)} | {cell(r['right_tool'])} | {r['garbage']} | {r['seconds_per_prompt']:.2f} "
              f"| {r['passes_per_prompt']:.0f} |")
    modes = {s: {f: [o.id for o in outs if o.failure == f] for f in FAILURES} for s, outs in outcomes.items()}
    print("\n| strategy | " + " | ".join(FAILURES) + " |")
    print("|---|" + "---|" * len(FAILURES))
    for s, m in modes.items():
        print(f"| {s} | " + " | ".join(str(len(m[f])) for f in FAILURES) + " |")
    equal = compare_to_greedy(outcomes, lambda o: o.correct, args.time_ratio) if "greedy" in outcomes else []
    fixes: dict[str, list[str]] = {}
    if len(strategies) == 2:  # paired: the prompts one strategy gets right and the other wrong
        a, b = strategies
        pairs = list(zip(outcomes[a], outcomes[b], strict=True))
        fixes = {f"{b}_not_{a}": [x.id for x, y in pairs if y.correct and not x.correct],
                 f"{a}_not_{b}": [x.id for x, y in pairs if x.correct and not y.correct]}
        print(f"\nright under {b}, wrong under {a}: {len(fixes[f'{b}_not_{a}'])} "
              f"({', '.join(fixes[f'{b}_not_{a}']) or '-'}); right under {a}, wrong under {b}: "
              f"{len(fixes[f'{a}_not_{b}'])} ({', '.join(fixes[f'{a}_not_{b}']) or '-'})")
    print(json.dumps({"bench": "fresh_phrasings", "model": label, "prompt_file": args.prompts.name,
                      "prompts": len(cases),
                      "budget": args.budget, "max_new_tokens": args.max_new_tokens, "overall": overall,
                      "held_out": {s: split.get("held-out families", {}).get(s) for s in strategies},
                      "by_kind": by_kind, "by_family": by_family, "failures": modes, "paired": fixes,
                      "time_ratio": args.time_ratio, "equal_time": equal}))


if __name__ == "__main__":
    main()
