"""calc at its limits: huge numbers, infinities and very long expressions give a clear error (or the
right answer), never Python's internals (int-str limit text, lark's VisitError, RecursionError, inf).

Each case is checked as the model and the user see it: the island of a call run by the ToolRunner.
"""

from __future__ import annotations

import pytest

from agent.tooling.registry import default_registry
from agent.tooling.runner import ToolRunner
from agent.tools.calc import calc

INTERNALS = ("set_int_max_str_digits", "VisitError", "Error trying to process rule", "RecursionError",
             "recursion", "Traceback", "inf", "nan", "OverflowError", "ValueError")


def island(expr: str) -> str:
    return ToolRunner(default_registry()).run("calc", {"expr": expr}).island_text


@pytest.mark.parametrize("expr, message", [
    ("2 ** 20000", "result too large"),  # 6,021 digits: over the limit on printing an int
    ("9 ** 99999", "result too large"),
    ("1" * 5000, "number too long"),  # an input number over the limit
    ("10 ** 400 * 1.5", "result too large"),  # an int too large to become a float
    ("10 ** 400 % 1.5", "result too large"),
    ("10 ** 400 // 1.5", "result too large"),
    ("10 ** 400 + 0.5", "result too large"),
    ("1e999", "number too large"),  # float("1e999") is inf
    ("1e999 - 1e999", "number too large"),  # would be nan
    ("1e308 * 10", "result too large"),
])
def test_huge_numbers_give_a_clear_error(expr: str, message: str) -> None:
    text = island(expr)
    assert text.startswith("\n=> error: ") and message in text
    assert not any(leak in text for leak in INTERNALS), text


def test_a_number_just_under_the_limit_is_exact() -> None:
    assert calc("10 ** 4299") == "1" + "0" * 4299  # 4,300 digits: the most an int may print


@pytest.mark.parametrize("expr, expected", [
    (" + ".join(["1"] * 1000), "1000"),
    (" - ".join(["1"] * 1001), "-999"),
    (" * ".join(["1"] * 1000), "1"),
    ("-" * 1000 + "1", "1"),  # 1,000 unary minus signs
    ("(" * 1000 + "2" + ")" * 1000 + " + 1", "3"),
    ("(" * 1000 + "1 + " * 999 + "1" + ")" * 1000, "1000"),
])
def test_a_thousand_chained_operators_or_parentheses_are_evaluated(expr: str, expected: str) -> None:
    assert island(expr) == f"\n=> {expected}\n"


def test_deeply_nested_power_towers_are_too_large_not_a_crash() -> None:
    text = island(" ** ".join(["2"] * 1000))
    assert text == "\n=> error: result too large\n"
