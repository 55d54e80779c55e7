"""BFCL's single-turn test data as shipped in the `bfcl-eval` package (for bench/bfcl.py).

`pip install --no-deps bfcl-eval` brings `bfcl_eval/data/BFCL_v4_<category>.json` (one case a line:
id, question as chat turns, function descriptions) and `possible_answer/BFCL_v4_<category>.json`
(id, ground_truth). The package is not imported (its __init__ pulls in its heavy dependencies): only
its files are read.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Categories that are not one question answered by calls: several turns, agentic memory or web search,
# or the prompt-format study (its file is not one JSON object a line).
_NOT_SINGLE_TURN = ("multi_turn", "memory", "web_search", "format_sensitivity")
# Java and JavaScript cases are checked after BFCL's own type converters, which are not kept here.
_OTHER_LANGUAGES = ("simple_java", "simple_javascript")


class DataError(Exception):
    """The data cannot be found or a category is not one this bench runs; the message says which."""


@dataclass
class Case:
    id: str
    question: str  # the user's message (the last user turn of the case's only conversation)
    system: str | None  # a system turn the case itself carries (a few live cases), else None
    functions: list[dict[str, Any]]
    answers: list[dict[str, Any]] | None  # None: relevance categories (judged by whether a call is made)


def data_dir() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the BFCL data is not installed: pip install --no-deps bfcl-eval")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def categories() -> list[str]:
    """Every single-turn category whose data file ships, in name order."""
    names = sorted(p.name[len("BFCL_v4_"):-len(".json")] for p in data_dir().glob("BFCL_v4_*.json"))
    return [n for n in names if not any(n.startswith(x) for x in _NOT_SINGLE_TURN) and n not in _OTHER_LANGUAGES]


def is_relevance(category: str) -> bool:
    """Judged by whether any call is made (irrelevance: none is right; relevance: one is)."""
    return "relevance" in category


def expects_calls(category: str) -> bool:
    return "irrelevance" not in category


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_cases(category: str, limit: int = 0, skip: int = 0) -> list[Case]:
    """The category's cases in file order, after the first `skip`, `limit` of them when it is not 0."""
    if category not in categories():
        raise DataError(f"unknown BFCL category {category!r}; this bench runs: {', '.join(categories())}")
    rows = _lines(data_dir() / f"BFCL_v4_{category}.json")
    rows = rows[skip:skip + limit] if limit else rows[skip:]
    answers: dict[str, Any] = {}
    if not is_relevance(category):
        answer_file = data_dir() / "possible_answer" / f"BFCL_v4_{category}.json"
        answers = {row["id"]: row["ground_truth"] for row in _lines(answer_file)}
    cases = []
    for row in rows:
        turns = row["question"][0]  # single-turn: one conversation
        users = [t["content"] for t in turns if t["role"] == "user"]
        systems = [t["content"] for t in turns if t["role"] == "system"]
        cases.append(Case(row["id"], users[-1], systems[0] if systems else None, row["function"],
                          None if is_relevance(category) else answers[row["id"]]))
    return cases
