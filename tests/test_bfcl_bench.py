"""bench/bfcl.py: the BFCL smoke run on the shipped demo model, and BFCL's rules on hand-checked answers.

Needs the data: `pip install --no-deps bfcl-eval`. The checker cases are real BFCL cases with answers
worked out by hand from the case's question, each also put to BFCL's own checker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))  # the bench's modules import each other by name, as when run as scripts

from bfcl_check import check, real_checker  # noqa: E402
from bfcl_data import load_cases  # noqa: E402
from bfcl_parse import read_calls  # noqa: E402
from bfcl_tools import ToolSet  # noqa: E402

ROW_KEYS = {"category", "condition", "strategy", "n", "accuracy", "ci95", "well_formed", "seconds_per_case",
            "forward_passes_per_case"}


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / "bfcl.py"), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_smoke_run_on_the_demo_model_prints_the_table_and_one_json_line() -> None:
    done = run_bench("--model", "demo", "--category", "simple_python,irrelevance", "--limit", "20",
                     "--strategies", "greedy", "--max-new-tokens", "48")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert "| category | condition | strategy | n | accuracy |" in done.stdout
    assert "bfcl cases" in done.stderr  # the progress bar goes to stderr, never into the table
    report = json.loads(lines[-1])
    assert set(report) == {"model", "results"} and report["model"] == "demo"
    rows = {(r["category"], r["condition"], r["strategy"]): r for r in report["results"]}
    assert set(rows) == {(c, cond, "greedy") for c in ("simple_python", "irrelevance")
                         for cond in ("free", "constrained")}
    for row in rows.values():
        assert set(row) == ROW_KEYS
        assert row["n"] == 20
        assert 0.0 <= row["ci95"][0] <= row["accuracy"] <= row["ci95"][1] <= 1.0
        assert 0.0 <= row["well_formed"] <= 1.0
        assert row["seconds_per_case"] > 0 and row["forward_passes_per_case"] >= 1
    for category in ("simple_python", "irrelevance"):
        assert rows[(category, "constrained", "greedy")]["well_formed"] == 1.0  # the grammar writes no bad call
    # under `required` every simple case gets a call; the demo model, trained on calc alone, writes free
    # calls to calc, which is no function of these cases
    assert rows[("simple_python", "free", "greedy")]["well_formed"] < 1.0
    assert "agrees with bench/bfcl_check.py on" in done.stdout


def test_an_unknown_category_is_a_one_line_error_before_any_model_loads() -> None:
    done = run_bench("--category", "simple_pythn", "--limit", "1")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "unknown BFCL category 'simple_pythn'" in done.stderr and "simple_python" in done.stderr


def case(category: str, index: int):  # type: ignore[no-untyped-def]
    return load_cases(category, index + 1)[index]


# simple_python_0: "Find the area of a triangle with a base of 10 units and height of 5 units."
TRIANGLE = [
    ({"calculate_triangle_area": {"base": 10, "height": 5}}, True, ""),
    ({"calculate_triangle_area": {"base": 10, "height": 5, "unit": "Units"}}, True, ""),  # case-insensitive
    ({"calculate_triangle_area": {"base": 5, "height": 10}}, False, "value_error:others"),
    ({"calculate_triangle_area": {"base": 10}}, False, "simple_function_checker:missing_required"),
    ({"calculate_triangle_area": {"base": 10, "height": 5, "color": "red"}}, False,
     "simple_function_checker:unexpected_param"),
    ({"calculate_triangle_area": {"base": "10", "height": 5}}, False, "type_error:simple"),
    ({"calculate_triangle_area": {"base": True, "height": 5}}, False, "type_error:simple"),  # a bool is no integer
    ({"triangle_area": {"base": 10, "height": 5}}, False, "simple_function_checker:wrong_func_name"),
]


@pytest.mark.parametrize(("call", "valid", "error"), TRIANGLE)
def test_bfcl_rules_on_a_simple_case_agree_with_bfcls_own_checker(call: dict, valid: bool, error: str) -> None:
    c = case("simple_python", 0)
    verdict = check("simple_python", c.functions, [call], c.answers)
    assert (verdict.valid, verdict.error_type) == (valid, error)
    assert real_checker()("simple_python", c.functions, [call], c.answers) is valid


def test_parallel_calls_match_in_any_order_and_multiple_picks_the_answer_function() -> None:
    real = real_checker()
    par = case("parallel", 0)  # play Taylor Swift for 20 minutes and Maroon 5 for 15
    swapped = [{"spotify.play": {"artist": "maroon 5", "duration": 15}},
               {"spotify.play": {"artist": "Taylor Swift", "duration": 20}}]
    one = swapped[:1]
    wrong = [{"spotify.play": {"artist": "Maroon 5", "duration": 20}},
             {"spotify.play": {"artist": "Taylor Swift", "duration": 15}}]
    for calls, valid in ((swapped, True), (one, False), (wrong, False)):
        assert check("parallel", par.functions, calls, par.answers).valid is valid
        assert real("parallel", par.functions, calls, par.answers) is valid
    mul = case("multiple", 0)  # a triangle with sides 5, 4 and 3: triangle_properties.get, not the circle's
    right = [{"triangle_properties.get": {"side1": 5, "side2": 4, "side3": 3, "get_area": True}}]
    other = [{"circle_properties.get": {"radius": 5.0}}]
    for calls, valid in ((right, True), (other, False)):
        assert check("multiple", mul.functions, calls, mul.answers).valid is valid
        assert real("multiple", mul.functions, calls, mul.answers) is valid


def test_dotted_names_become_tool_names_and_come_back_for_the_checker() -> None:
    c = case("simple_python", 1)  # math.factorial of 5
    tools = ToolSet(c.functions)
    assert tools.registry.names() == ["math_factorial"]
    # the constrained call (tool name) and a free one (BFCL's own name) read back the same
    for text in ("CALL(math_factorial, number=5)", "Sure: math.factorial(number=5)", "[math.factorial(number=5)]"):
        calls = read_calls(text, lambda name: tools.lookup(name) is not None)
        assert [tools.to_bfcl(n, a) for n, a in calls] == [{"math.factorial": {"number": 5}}], text
        assert all(tools.well_formed(n, a) for n, a in calls)
    assert check("simple_python", c.functions, [tools.to_bfcl("math_factorial", {"number": 5})], c.answers).valid
    assert not tools.well_formed("math_factorial", {"number": "five"})
    assert not tools.well_formed("factorial", {"number": 5})
    assert read_calls("The factorial of 5 is 120.", lambda name: tools.lookup(name) is not None) == []
