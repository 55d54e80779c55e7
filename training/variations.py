"""How people write when they are not careful (training only, seeded): lowercase and typos, numbers in
words, arithmetic as verbs ("multiply 3 by 4") and as word problems, names inside a longer sentence.

The fresh phrasings (bench/fresh_phrasings.jsonl) showed what the templates of training.phrasings
missed: the model read "multiply 312 by 19" as a power, searched for a made-up name when a number
question came as a story, and copied the first capitalised word ("Before") as the searched name.
Every function here takes the generator's `random.Random`, so the corpus stays reproducible.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from training.phrasings import WORD_OPS_TRAIN

# Arithmetic written as a verb or a noun phrase: (template, the call's expression). The call keeps the
# user's numbers in the order the operation needs (subtract A from B is B - A).
VERB_OPS_TRAIN: list[tuple[str, str]] = [
    ("multiply {a} by {b}", "{a} * {b}"), ("Multiply {a} by {b}.", "{a} * {b}"),
    ("{a} multiplied with {b}", "{a} * {b}"), ("the product of {a} and {b}", "{a} * {b}"),
    ("add {a} to {b}", "{b} + {a}"), ("Add {a} and {b}.", "{a} + {b}"), ("the sum of {a} and {b}", "{a} + {b}"),
    ("{a} and {b} added together", "{a} + {b}"), ("subtract {a} from {b}", "{b} - {a}"),
    ("take {a} away from {b}", "{b} - {a}"), ("the difference between {a} and {b}", "{a} - {b}"),
    ("{a} less {b}", "{a} - {b}"), ("divide {a} by {b}", "{a} / {b}"), ("Divide {a} by {b}.", "{a} / {b}"),
    ("{a} split into {b} parts", "{a} / {b}"), ("{a} squared", "{a} ** 2"), ("{a} cubed", "{a} ** 3"),
    ("the square of {a}", "{a} ** 2"),
]
# Frames around a verb phrase (lowercase starts are kept as the user wrote them).
VERB_FRAMES_TRAIN = ["{v}", "{v}?", "Can you {v}?", "What do I get if I {v}?", "please {v}", "{v} for me",
                     "What is {v}?", "whats {v}", "I need {v}.", "ok now {v}", "Could you {v} please?"]

# Word problems: (story, expression). {a} and {b} are numbers, {x} a thing counted.
WORD_PROBLEMS_TRAIN: list[tuple[str, str]] = [
    ("I have {a} bags with {b} {x} in each. How many {x} is that?", "{a} * {b}"),
    ("There are {a} rows of {b} {x}. How many {x} in total?", "{a} * {b}"),
    ("One box holds {b} {x}. How many {x} fit in {a} boxes?", "{a} * {b}"),
    ("A ticket costs {b}. What do {a} tickets cost?", "{a} * {b}"),
    ("I earn {b} a week. How much is that over {a} weeks?", "{a} * {b}"),
    ("A bus drives {b} km per hour. How far does it get in {a} hours?", "{a} * {b}"),
    ("I had {a} {x} and got {b} more. How many {x} do I have now?", "{a} + {b}"),
    ("One shelf has {a} {x}, another has {b}. How many {x} altogether?", "{a} + {b}"),
    ("My savings were {a} and I put in {b}. What are my savings now?", "{a} + {b}"),
    ("There were {a} {x} and {b} were sold. How many are left?", "{a} - {b}"),
    ("I had {a} and spent {b}. How much is left?", "{a} - {b}"),
    ("A tank held {a} litres and {b} leaked out. How much is still in it?", "{a} - {b}"),
    ("Share {a} {x} equally among {b} people. How many does each get?", "{a} / {b}"),
    ("{a} {x} are packed {b} to a box. How many boxes is that?", "{a} / {b}"),
    ("The trip costs {a} for {b} people. What does each person pay?", "{a} / {b}"),
]
THINGS = ["apples", "pencils", "books", "chairs", "eggs", "cookies", "stamps", "marbles", "cards", "bottles",
          "shirts", "cups", "nails", "tiles", "seeds", "coins", "plates", "tickets", "stones", "candles"]

# A name mentioned before the question, which then says "it"/"its" (the searched name is not the first word).
EMBED_TRAIN = ["I read about {n} today. {f}", "My friend keeps talking about {n}. {f}",
               "For my homework on {n}: {f}", "We talked about {n} in class. {f}", "Someone told me about {n}. {f}",
               "I'm planning a trip to {n}. {f}", "So about {n}... {f}", "Next week I visit {n}. {f}",
               "I saw {n} on the news. {f}", "My teacher mentioned {n}. {f}"]

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0 <= n < 1,000,000 in English words ("three thousand four hundred and five").

    Written here rather than taken from a library so that the corpus (and its cache key) cannot
    change with a library's version.
    """
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words covers 0..999999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return f"{_ONES[n // 100]} hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    head = f"{number_words(n // 1000)} thousand"
    if rest == 0:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


def words_for_numbers(text: str) -> str | None:
    """`text` with every whole number written in words; None when one should not be (a decimal, or a
    number above 99999, which nobody spells out)."""
    if re.search(r"\d\.\d", text) or any(int(m) >= 100_000 for m in re.findall(r"\d+", text)):
        return None
    return re.sub(r"\d+", lambda m: number_words(int(m.group())), text)


def typo(word: str, rng: random.Random) -> str:
    """One slip of the keyboard: a letter dropped, doubled or swapped with the next."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1:]
    if kind < 0.7:
        return word[:i] + word[i] + word[i:]
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]


def careless(text: str, keep: str, rng: random.Random) -> str:
    """`text` as typed in a hurry: lowercase, no final punctuation, sometimes a typo.

    `keep` (the name the answer searches for, or "") is only lowercased, never misspelt: the call
    copies it, and a typo in it is a different name.
    """
    out = text.lower().rstrip(".?!")
    if rng.random() < 0.5:
        words = out.split(" ")
        keep_words = set(keep.lower().split())
        spots = [i for i, w in enumerate(words) if w.isalpha() and w not in keep_words and len(w) >= 4]
        if spots:
            i = rng.choice(spots)
            words[i] = typo(words[i], rng)
        out = " ".join(words)
    return out


def verb_question(rng: random.Random, number: Callable[[], str]) -> tuple[str, str]:
    """(question, expression): arithmetic on two numbers as a verb or noun phrase in a frame."""
    template, expr = rng.choice(VERB_OPS_TRAIN)
    a, b = number(), number()
    if "**" in expr:
        a = str(rng.randint(2, 99))
    question = rng.choice(VERB_FRAMES_TRAIN).format(v=template.rstrip(".").format(a=a, b=b))
    return question, expr.format(a=a, b=b)


def word_problem(rng: random.Random) -> tuple[str, str]:
    """(story, expression) with small numbers and, for a division, a whole quotient."""
    story, expr = rng.choice(WORD_PROBLEMS_TRAIN)
    b = str(rng.randint(2, 99))
    a = str(int(b) * rng.randint(2, 99)) if "/" in expr else str(rng.randint(2, 999))
    return story.format(a=a, b=b, x=rng.choice(THINGS)), expr.format(a=a, b=b)


def spoken_number(rng: random.Random) -> str:
    """A number people would say in words: small, or a round hundred or thousand."""
    x = rng.random()
    if x < 0.6:
        return str(rng.randint(1, 99))
    if x < 0.8:
        return str(rng.randint(1, 9) * 100 + (rng.choice([0, 0, rng.randint(1, 99)])))
    return str(rng.randint(1, 20) * 1000 + rng.choice([0, 0, 0, rng.randint(1, 999)]))


def spoken_expr(rng: random.Random) -> tuple[str, str]:
    """(the call's expression, the question's words for it) with one or two operators."""
    ops = [rng.choice("+-*/") for _ in range(rng.choice([1, 1, 2]))]
    nums = [spoken_number(rng) for _ in range(len(ops) + 1)]
    if ops[0] == "/":  # a whole quotient, as people ask for
        nums[1] = str(rng.randint(2, 12))
        nums[0] = str(int(nums[1]) * rng.randint(2, 30))
    expr = _between(nums, ops)
    shown = _between(nums, [rng.choice(WORD_OPS_TRAIN[o]) for o in ops])
    return expr, words_for_numbers(shown) or shown


def _between(numbers: list[str], operators: list[str]) -> str:
    """The numbers with the operators between them: ["6", "8"], ["times"] -> "6 times 8"."""
    return " ".join(x for pair in zip(numbers, operators + [""]) for x in pair).strip()
