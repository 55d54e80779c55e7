"""Held-out evaluation of the demo model through the real pipeline (ChatSession: grammar, tools, islands).

Cases come from `CorpusGenerator(split="eval")`: other question templates, other numbers and the
held-out knowledge-base entities (never in a training dialogue). Each case is scored on: the
right tool chosen (first call; none for chat), well-formed calls, and a correct final answer
(the exact number for CALC, the fact's value for SEARCH, "don't know" when the search finds
nothing, the document's title for LOAD).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import DecodeConfig
from agent.grammar.islands import ISLAND_PREFIX
from agent.model.runtime import LoadedModel
from agent.tooling.records import ToolCallRecord
from agent.tooling.registry import default_registry
from agent.turn import ChatSession
from training.corpus import CorpusGenerator
from training.phrasings import CHAT_EVAL
from training.worlds import shipped_kb

LOAD_EVAL = ["Please open document {i}.", "I want to read document {i}.", "Display document {i}."]
CALL_OPENINGS = re.compile(r"SEARCH\(|LOAD\(|CALL\(")


@dataclass
class EvalCase:
    kind: str  # calc | fact | unknown | load | chat
    prompt: str
    tool: str | None  # the right tool (None: no tool)
    expected: str  # what the final answer must contain
    meta: dict[str, Any] = field(default_factory=dict)


def eval_cases(seed: int = 0, n_calc: int = 40, n_fact: int = 40, n_unknown: int = 10, n_load: int = 10,
               n_chat: int = 10) -> list[EvalCase]:
    """The held-out cases (deterministic for a seed); call inside `shipped_kb()` or standalone."""
    with shipped_kb() as kb:
        gen = CorpusGenerator(kb, seed, split="eval", system="")
        cases: list[EvalCase] = []
        for _ in range(n_calc):
            ex = gen.calc_exchange()
            cases.append(EvalCase("calc", ex.user, "calc", ex.meta["expected"], {"expr": ex.meta["expr"]}))
        facts = [gen.fact_exchange() for _ in range(n_fact)]
        cases += [EvalCase("fact", ex.user, "search", ex.meta["expected"],
                           {"entity": ex.meta["entity"], "relation": ex.meta["relation"]}) for ex in facts]
        for _ in range(n_unknown):
            ex = gen.unknown_exchange()
            cases.append(EvalCase("unknown", ex.user, "search", "don't know", {"entity": ex.meta["entity"]}))
        held = [e for e in kb.entities if e.held_out]
        for i in range(n_load):
            entity = gen.rng.choice(held)
            prompt = LOAD_EVAL[i % len(LOAD_EVAL)].format(i=entity.id)
            cases.append(EvalCase("load", prompt, "load", entity.name, {"id": entity.id}))
        chats = [u for users, _ in CHAT_EVAL for u in users]
        for i in range(n_chat):
            cases.append(EvalCase("chat", chats[i % len(chats)], None, ""))
    return cases


def final_answer(response: str) -> str:
    """The text after the last island (what the model says once the tools have answered)."""
    idx = response.rfind(ISLAND_PREFIX)
    if idx < 0:
        return response
    end = response.find("\n", idx + len(ISLAND_PREFIX))
    return response[end + 1:] if end >= 0 else ""


def contains_value(text: str, value: str) -> bool:
    """`value` appears as a whole number/word (7006652 does not match inside 70066521 or 7006652.5)."""
    pattern = r"(?<![\w.])" + re.escape(value) + r"(?!\w|\.\d)"
    return re.search(pattern, text) is not None


def score(case: EvalCase, response: str, tool_calls: list[ToolCallRecord]) -> dict[str, bool]:
    """right_tool, well_formed, correct for one answered case."""
    first = tool_calls[0].tool if tool_calls else None
    right_tool = first == case.tool
    # Every call the model opened was parsed and run (an unparsed call leaves no record).
    model_text = re.sub(re.escape(ISLAND_PREFIX) + r"[^\n]*\n", "\n", response)
    opened = len(CALL_OPENINGS.findall(model_text))
    well_formed = opened == len(tool_calls) and all(
        not (c.error or "").startswith(("bad argument", "unknown tool", "cannot parse")) for c in tool_calls)
    answer = final_answer(response)
    if case.kind == "chat":
        correct = not tool_calls and bool(answer.strip())
    elif case.kind == "unknown":
        correct = right_tool and "don't know" in answer
    else:
        correct = right_tool and bool(tool_calls) and contains_value(answer, case.expected)
    return {"right_tool": right_tool, "well_formed": well_formed, "correct": correct}


def run_eval(lm: LoadedModel, strategy: str = "greedy", cases: list[EvalCase] | None = None, *,
             max_new_tokens: int = 128, log: Callable[[str], None] | None = None,
             **config: Any) -> dict[str, Any]:
    """Answer every case in a fresh ChatSession with the built-in tools; rates and failures."""
    cases = cases if cases is not None else eval_cases()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with shipped_kb():
        registry = default_registry()
        for case in cases:
            session = ChatSession(lm, registry, DecodeConfig(strategy=strategy, max_new_tokens=max_new_tokens,
                                                             **config), confirm=lambda record: False)
            t0 = time.perf_counter()
            result = session.ask(case.prompt)
            row = {"kind": case.kind, "prompt": case.prompt, "expected": case.expected,
                   "response": result.response, "seconds": round(time.perf_counter() - t0, 3),
                   **score(case, result.response, result.tool_calls)}
            rows.append(row)
            if log is not None and not row["correct"]:
                log(f"[{strategy}] wrong: {case.prompt!r} -> {result.response!r} (expected {case.expected!r})")
    n = len(rows)
    by_kind: dict[str, float] = {}
    for kind in sorted({r["kind"] for r in rows}):
        group = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = round(100 * sum(r["correct"] for r in group) / len(group), 1)
    return {
        "strategy": strategy,
        "cases": n,
        "right_tool_pct": round(100 * sum(r["right_tool"] for r in rows) / n, 1),
        "well_formed_pct": round(100 * sum(r["well_formed"] for r in rows) / n, 1),
        "correct_pct": round(100 * sum(r["correct"] for r in rows) / n, 1),
        "correct_by_kind_pct": by_kind,
        "seconds": round(time.perf_counter() - started, 1),
        "failures": [r for r in rows if not r["correct"]],
    }
