"""The loop guard: answers that go round in circles, exactly or with small edits, are caught; lists,
tables and code that repeat their structure are not; every search cuts or ranks down looping branches.

The texts here were written for this test and are not the ones the thresholds were calibrated on.
"""

from __future__ import annotations

import pytest

from agent.config import DecodeConfig
from agent.decoding.loop_guard import ends_in_loop, has_loop
from agent.decoding.search import search_response
from agent.model.runtime import LoadedModel
from agent.tooling import tool
from agent.tooling.registry import ToolRegistry
from agent.turn import ChatSession

# What the tree picked on SmolLM2-135M-Instruct (the issue), and loops of its kind.
ISSUE_LOOP = "98765 - 43210 = 98765 + 43210 = 98765 + 43210 = 98765 + 43210 = 98765 + 43210 = 98765 + 43210 ="
LOOPS = {
    "issue": ISSUE_LOOP,
    "issue after an answer": "To subtract, line up the digits. " + ISSUE_LOOP,
    "sentence with small edits": ("The result of the calculation is 55555. The result of this calculation is 55555. "
                                  "The result of the calculation is 55555! The result of the calculation was 55555. "
                                  "The result of the calculation is 55555."),
    "call repeated": ('SEARCH("weather in Oslo")\n' * 4 + 'SEARCH("weather in Oslo today")\n'
                      + 'SEARCH("weather in Oslo")\n' * 2),
    "one character": "Yes" + "!" * 80,
    "two sentences alternating": ("Paris is in France. France is in Europe. " * 5).strip(),
    # what the tree chose on SmolLM2 after the plain loop was caught: every repeat changes a number
    "counting (bench/batched.py)": "98765 - 43210 = 98765 + 43210 = " + " = ".join(
        f"{n} + 43210" for n in range(98766, 98776)),
    # the same, as the tree returned it at 64 new tokens: too short for the repeat count, an equation chain
    "counting, cut at 64 tokens": "98765 - 43210 = 98765 + 43210 = 98766 + 43210 = 98767 + 43210 = 98768 + 4",
    # what the tree chose next on SmolLM2 (bench/batched.py, 64 tokens), each too short for the count
    "sums set equal to sums": "98765 - 43210 = 98765 - 43210 = 98765 + 43210 = 98765 + 43210",
    "a number that does not end": ("The largest planet in the solar system is Neptune, which is approximately "
                                   "178,000,000,000,000,000,000,000,000,000,000,000,00"),
    # lines too short for the repeat count, each said again or counted on (written for this test)
    "a line said three times": "Lima is the capital of Peru.\n" * 3 + "Lima is the capital.",
    "an equation said again on each line": "Here it is:\n" + "365 * 24 = 8760\n" * 3,
    "a line counted down": "\n".join(f"500 / 5 = {n}" for n in range(100, 94, -1)),
    "a line counted, now and then twice": "\n".join(f"7 + 7 = {n}" for n in (12, 13, 13, 14, 15, 15, 16)),
    "an equation restated with any number": "\n".join(f"48 / {n} = 48" for n in (6, 60, 600, 3, 4, 9)),
    "made-up results of one shape": "\n".join(f"77 * {n} = {r}"
                                               for n, r in ((2, 154), (3, 2131), (4, 318), (5, 87), (6, 7))),
    "false equations of changing forms": "Let me check.\n12 = 12 * 2\n12 = 48\n12 * 3 = 12 * 3 = 37\n12 + 1 = 13",
    # the tree's answer in bfloat16 (bench/batched.py, 64 tokens): the commas hid the chain
    "sums set equal in words, with commas": ("98765 - 43210 is 98765 - 43210, which is 98765 + 43210, which is "
                                             "98765 + 43210, which is 98"),
    "sums set equal in words": "So 6120 - 2040 is 6120 - 2040 which is 6120 + 2040 which equals 6120 + 2040 which is",
    "sentence restated with new numbers": " ".join(f"So {n} divided by 4 is {n // 4} and the rest is {n % 4}."
                                                   for n in range(401, 409)),
}
NORMAL = {
    "numbered list": ("Packing list for a weekend hike:\n1. Water bottle (two litres)\n2. Rain jacket\n3. Trail map\n"
                      "4. Sunscreen and a hat\n5. Snacks: nuts, dried fruit\n6. First-aid kit\n7. Head torch\n"
                      "8. Spare socks"),
    "bullet list": ("- Monday: swim 30 minutes\n- Tuesday: run 5 km\n- Wednesday: rest\n- Thursday: swim 45 minutes\n"
                    "- Friday: run 8 km\n- Saturday: cycle 20 km\n- Sunday: rest"),
    "markdown table": ("| planet | moons | day (h) | ring |\n|---|---|---|---|\n| Mercury | 0 | 1408 | no |\n"
                       "| Venus | 0 | 5832 | no |\n| Earth | 1 | 24 | no |\n| Mars | 2 | 25 | no |\n"
                       "| Jupiter | 95 | 10 | yes |\n| Saturn | 146 | 11 | yes |"),
    "python": ("def area(shape, a, b=0):\n    if shape == \"square\":\n        return a * a\n"
               "    if shape == \"rectangle\":\n        return a * b\n    if shape == \"triangle\":\n"
               "        return a * b / 2\n    if shape == \"circle\":\n        return 3.14159 * a * a\n"
               "    raise ValueError(shape)\n"),
    "csv": "date,city,temp\n2024-01-01,Oslo,-3\n2024-01-02,Oslo,-5\n2024-01-03,Bergen,2\n2024-01-04,Bergen,4",
    "big numbers": "A googol is 10000000000000000000000000000000000000000 and a trillion is 1000000000000.",
    "prime numbers": "Primes below 150: " + ", ".join(str(n) for n in range(2, 150)
                                                      if all(n % d for d in range(2, n))) + ".",
    "squares counted on one line": " ".join(str(n * n) for n in range(1, 45)),
    "times table": "\n".join(f"9 x {n} = {9 * n}" for n in range(1, 13)),
    # (a log whose lines share 30 characters, or a grid whose rows repeat exactly, the exact repeat count
    # flags: see agent.decoding.loop_guard)
    "server log": "\n".join(f"09:14:{s:02d} {verb} /api/{path} {code} {18 + s % 7} ms" for s, (verb, path, code) in
                            enumerate([("POST", "orders", 201), ("GET", "orders/7", 200), ("GET", "users", 200),
                                       ("DELETE", "orders/7", 204), ("GET", "health", 200), ("PUT", "users/3", 200),
                                       ("GET", "orders", 200), ("POST", "login", 401), ("POST", "login", 200)])),
    "number grid": "\n".join(" ".join(str((7 * r * r + 5 * c + r * c) % 10) for c in range(9)) for r in range(9)),
    "worked steps on one line": "Step by step: 18 * 4 = 72, then 72 + 9 = 81, and 81 / 3 = 27, so the answer is 27.",
    "large numbers written out": ("The Sun's mass is about 1,989,000,000,000,000,000,000,000,000,000 kg and a "
                                  "mole holds 602,214,076,000,000,000,000,000 particles."),
    "an identity checked twice": "7 * 8 = 8 * 7 = 56, and 56 / 7 = 8.",
    "a long sum": "The total is 3 + 8 + 14 + 2 + 11 + 6 + 9 + 4 + 7 + 5 + 12 + 1 = 82 apples in all.",
    "years in prose": ("The bridge opened in 1874, was widened in 1921 and again in 1958, closed for repairs "
                       "from 1990 to 1993, and carried 41000 vehicles a day by 2015."),
    "powers of two, a line each": "\n".join(f"2^{n} = {2 ** n}" for n in range(1, 11)),
    "fibonacci, a line each": "\n".join(f"F({n}) = {f}" for n, f in enumerate([1, 1, 2, 3, 5, 8, 13, 21, 34], 1)),
    "divisions rounded, a line each": "\n".join(f"{n} / 7 = {n / 7:.2f}" for n in range(10, 17)),
    "sums checked, one of them wrong": "2 + 2 = 4\n3 + 5 = 8\n6 + 7 = 14\n9 + 9 = 18\n11 + 4 = 15",
    "results stated in words": ("The sum 12 + 30 is 42, the product 6 * 7 is 42 as well, and 84 / 2 is 42 too: "
                                "three ways to 42, which is the answer."),
    "counting one number per line": "\n".join(str(n) for n in range(1, 13)),
    "three rows of zeros": "\n".join(["| 0 | 0 | 0 | 0 |"] * 3),
    "assignments in code": "\n".join(f"x{n} = load(\"part{n}.csv\")" for n in range(1, 8)),
    "a countdown in words": "\n".join(f"T minus {n} seconds: {word}" for n, word in
                                       zip(range(5, 0, -1), ["fuel", "pressure", "guidance", "engines", "go"])),
    "wide separator": ("| a | b | c | d | e | f | g | h |\n|---|---|---|---|---|---|---|---|\n"
                       "| 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 |"),
}


@pytest.mark.parametrize("name", LOOPS)
def test_looping_answers_are_caught(name: str) -> None:
    text = LOOPS[name]
    assert has_loop(text)
    assert ends_in_loop(text)  # where the search would cut the branch


@pytest.mark.parametrize("name", NORMAL)
def test_answers_that_repeat_their_structure_are_not_loops(name: str) -> None:
    text = NORMAL[name]
    assert not has_loop(text)
    assert not any(ends_in_loop(text[:end]) for end in range(1, len(text) + 1))  # not at any point as it grew


def test_a_loop_in_the_middle_counts_and_a_short_repeat_does_not() -> None:
    assert has_loop(ISSUE_LOOP + "\nSo the answer is 55555, and that is the final result of it all.")
    assert not ends_in_loop(ISSUE_LOOP + "\nSo the answer is 55555, and that is the final result of it all." * 1
                            + " Subtraction takes one number away from another; addition puts them together.")
    assert not has_loop("98765 - 43210 = 55555. Check: 55555 + 43210 = 98765.")


def test_an_answer_cut_inside_a_runaway_number_is_a_loop_though_the_number_written_out_is_not() -> None:
    # what the tree chose on SmolLM2 at 64 tokens (bench/batched.py): ten groups, one more than the Sun's mass
    cut = "The answer is 179,840,000,000,000,000,000,000,000,000,000,00"
    assert has_loop(cut) and has_loop(cut.removesuffix("00"))  # cut after the comma too
    assert not ends_in_loop(cut)  # while it grows it may still end: only the finished answer tells
    assert not has_loop(cut.removesuffix(",00") + " tonnes.")  # a large number that ends is written out
    assert not has_loop("It costs 1,250,000,00")  # cut inside a number, but nothing ran away


@pytest.mark.parametrize("strategy", ["beam", "best-of-n", "tree"])
def test_no_search_returns_a_looping_answer_where_greedy_loops(tiny_lm: LoadedModel, strategy: str) -> None:
    # The random tiny model goes round in circles (one character again and again) when left to itself.
    prompt = tiny_lm.tokenizer.encode("<|user|>\nyes no yes no<|end|>\n<|assistant|>\n")
    config = DecodeConfig(max_new_tokens=120, budget=300, beam_width=2, num_samples=3, seed=1)
    greedy = search_response(tiny_lm, prompt, config.replace(strategy="greedy"))
    assert has_loop(greedy.text) and greedy.best.new_tokens == 120
    result = search_response(tiny_lm, prompt, config.replace(strategy=strategy))
    assert result.candidates
    assert not any(has_loop(c.text) for c in result.candidates)


@tool(pure=False)
def jot(text: str) -> str:
    """Jot the text down (a side effect: it waits for the chosen branch and asks first)."""
    return "jotted"


@pytest.mark.parametrize("strategy", ["best-of-n", "tree"])
def test_after_a_declined_side_effect_call_the_answer_goes_on_without_looping(tiny_lm: LoadedModel,
                                                                             strategy: str) -> None:
    # a side-effect call waits for the search's chosen branch; the answer then went on with the plain greedy
    # loop, which has no guard (SmolLM2 wrote "The user declined." ten times after a declined note)
    registry = ToolRegistry()
    registry.register(jot)
    config = DecodeConfig(strategy=strategy, tool_choice="jot", max_new_tokens=120, budget=300, num_samples=3,
                          seed=1)
    result = ChatSession(tiny_lm, registry, config, confirm=lambda call: False).ask("yes no yes no")
    assert [call.tool for call in result.tool_calls][:1] == ["jot"] and result.tool_calls[0].error  # declined
    after = result.response[result.response.index(result.tool_calls[0].island_text)
                            + len(result.tool_calls[0].island_text):]
    assert after.strip() and not has_loop(after), after
