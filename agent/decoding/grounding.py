"""Numbers in a call come from the conversation: a prior against numbers nobody wrote.

A small model copies numbers from where it saw them, and the nearest numbers are often the worked example's:
SmolLM2-135M-Instruct, shown "What is 12 * 7?" as the calc example, called `calc(expr="12 * 48")` for "23 boxes
with 48 apples each" and `12 * 7` for "Add 19.5 and 0.25" (bench/real_models.py). The user's numbers and the
tools' results are the ones a call should use. So inside a call's arguments, a token that writes a number the
conversation never wrote, or starts one that no written number starts with, costs GROUNDING_PENALTY nats: its
score is its log-probability minus the penalty (not renormalised: a served model's top log-probs then score as
the whole distribution does), and every strategy that grows a response from the model's next-token
distribution (greedy, sample, beam, best-of-n, tree) chooses and scores that way. A number the model is sure
of still comes through (a penalty, not a mask): "how many seconds in a day" may use 60 and 24.

A number's first digit already pays when no written number starts with it: judged only once it ends, "1"
would pass as a number of its own and "12" could no longer be helped. So a constant nobody wrote (the 2 of a
square) pays too, and comes through only when the model is that sure of it. A first 0 is free (it may become
0.05 or the 01 of a date). A conversation that wrote no number gets no bias: every number would cost the same.

An expression uses every number the user asked about: SmolLM2 wrote `calc(expr="36 * 36")` for "What is 36
times 36 times 36?", Gemma 3 `calc(expr="4096")` for "How much is 4096 divided by 16?". So a token that
closes a string argument that is nothing but arithmetic (numbers, operators, parentheses), while a number of
the user's last message (each time it was written: 36 three times) is in none of this response's calls, costs
the penalty too, and the model goes on to write it. Any other string closes freely: in
`finder(platform="Windows 10", rating=4.5)` the 4.5 is the next argument's (BFCL's multiple_182, broken by a
first version that held every string with a digit open).

What counts as the conversation: the user's messages and the tools' results, those on this branch of the
response included; never the system prompt, which holds the worked examples. A number counts as written in
the forms a call may use: 12,000 also as 12000, 5% also as 0.05 and as 5 / 100 (100 counts as written), 01 as 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import torch

from agent.decoding.constraint import ResponseConstraint, Step

# ln(50): a number the conversation never wrote is taken only when the model prefers it 50 to 1
GROUNDING_PENALTY = 3.9
NUMBER = re.compile(r"\d+(?:\.\d+)?")
TRAILING_NUMBER = re.compile(r"\d+(?:\.\d*)?$")  # the number the text is writing ("19." included)
THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")  # "12,000" is the number 12000
PERCENT = re.compile(r"(\d+(?:\.\d+)?) ?%")  # "5%" is the number 0.05 as well
LEADING_ZEROS = re.compile(r"^0+(?=\d)")  # "01" of a date is the 1 of "January 1"
# a string that is nothing but arithmetic is an expression ("36 * 36", "4096"), unlike a name ("Windows 10")
ARITHMETIC = re.compile(r"[-+*/%^().\s]*\d[-+*/%^().\s\d]*")
# a number as written once: "12,000" is one number, not 12 and 000; "SmolLM2" holds none
OCCURRENCE = re.compile(r"(?<![A-Za-z_])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)( ?%)?")


def canonical(number: str) -> str:
    """The number without leading zeros (01 -> 1; 0.5 stays)."""
    return LEADING_ZEROS.sub("", number)


def as_fraction(percentage: str) -> str:
    """A percentage's number as the fraction it stands for: 15 -> 0.15, 1000 -> 10."""
    return format((Decimal(percentage) / 100).normalize(), "f")


def written_number(match: re.Match[str]) -> str:
    """The number an OCCURRENCE match wrote, as a call may write it: 12,000 -> 12000, 01 -> 1."""
    return canonical(match.group(1).replace(",", ""))


def numbers_in(text: str) -> set[str]:
    """The numbers written in `text`, as a call may write them: also without thousands separators, and a
    percentage also as a fraction."""
    found = set(NUMBER.findall(text))
    found |= {match.replace(",", "") for match in THOUSANDS.findall(text)}
    percentages = PERCENT.findall(text)
    found |= {as_fraction(match) for match in percentages}
    if percentages:  # 15% is 15 / 100 too
        found.add("100")
    return {canonical(number) for number in found}


def number_slots(text: str) -> list[frozenset[str]]:
    """Each number written in `text`, once per time it was written, as the forms a call may write it in
    (15% as 15 or 0.15)."""
    slots = []
    for match in OCCURRENCE.finditer(text):
        number = written_number(match)
        slots.append(frozenset({number, as_fraction(number)} if match.group(2) else {number}))
    return slots


def unused_slots(slots: Sequence[frozenset[str]], text: str) -> int:
    """How many of `slots` the numbers written in `text` leave unused (each written number used once)."""
    written = [written_number(match) for match in OCCURRENCE.finditer(text)]
    unused = 0
    for forms in slots:
        used = next((i for i, number in enumerate(written) if number in forms), None)
        if used is None:
            unused += 1
        else:
            del written[used]
    return unused


def open_value_string(call_text: str) -> str | None:
    """The string argument `call_text` is writing (JSON `"key": "...` or keyword `key="...`), or None."""
    start, escaped = None, False
    for at, char in enumerate(call_text):
        if escaped:
            escaped = False
        elif char == "\\" and start is not None:
            escaped = True
        elif char == '"':
            start = at if start is None else None
    if start is None or escaped or call_text[:start].rstrip()[-1:] not in (":", "="):
        return None
    return call_text[start + 1:]


class NumberTable:
    """The tokenizer's tokens that hold digits or end a number: computed once per tokenizer."""

    def __init__(self, token_texts: Sequence[str], width: int) -> None:
        self.width = width
        # tokens to check: those with digits, and those that go on with a decimal point ("84" + ".00")
        self.with_digits = [(i, text) for i, text in enumerate(token_texts)
                            if text.startswith(".") or any(c.isdigit() for c in text)]
        # tokens that end a number being written: all but those that go on with a digit or a decimal point
        goes_on = [bool(text) and (text[0].isdigit() or text[0] == ".") for text in token_texts]
        goes_on += [False] * (width - len(goes_on))
        self.ends_number = ~torch.tensor(goes_on[:width], dtype=torch.bool)
        # tokens that close a string, with the text they write before the quote
        self.closes_string = [(i, text[:text.index('"')]) for i, text in enumerate(token_texts[:width])
                              if '"' in text and not text[:text.index('"')].endswith("\\")]


class Grounding:
    """The numbers a call may use without a penalty, and the bias that follows from them."""

    def __init__(self, table: NumberTable, numbers: Iterable[str], penalty: float = GROUNDING_PENALTY,
                 asked: Sequence[frozenset[str]] = ()) -> None:
        self.table = table
        self.penalty = penalty
        self.asked = list(asked)  # number_slots of the user's last message
        self.numbers: set[str] = set()
        self.prefixes: set[str] = set()
        self.add(numbers)

    def add(self, numbers: Iterable[str]) -> None:
        for number in map(canonical, numbers):
            self.numbers.add(number)
            self.prefixes.update(number[:end] for end in range(1, len(number) + 1))

    def copy(self) -> Grounding:
        other = Grounding(self.table, (), self.penalty, self.asked)
        other.numbers, other.prefixes = set(self.numbers), set(self.prefixes)
        return other

    def fits(self, text: str) -> bool:
        """Are the numbers in `text` grounded: each whole one written, the one still open begun?"""
        open_number = TRAILING_NUMBER.search(text)
        for match in NUMBER.finditer(text):
            if open_number is not None and match.start() == open_number.start():
                written = open_number.group()
                # a first 0 may still become 0.05 or the 01 of a date ("000..." may not: it is nobody's)
                if written != "0" and canonical(written) not in self.prefixes:
                    return False
            elif canonical(match.group()) not in self.numbers:
                return False
        return True

    def bias(self, text: str) -> torch.Tensor:
        """Additive log-weights for the next token after `text` (the call so far)."""
        bias = torch.zeros(self.table.width)
        open_number = TRAILING_NUMBER.search(text)
        written = open_number.group() if open_number is not None else ""
        if written and not self.fits(written + " "):  # ending the number here leaves it ungrounded
            bias[self.table.ends_number] = -self.penalty
        for token, piece in self.table.with_digits:
            bias[token] = 0.0 if self.fits(written + piece) else -self.penalty
        return bias

    def closing_bias(self, call_text: str, earlier_calls: str) -> dict[int, float]:
        """Penalties for the tokens that would close the string argument `call_text` is writing while a number
        the user asked about is in neither it nor `earlier_calls` (this response's finished calls)."""
        value = open_value_string(call_text)
        if not self.asked or value is None or not ARITHMETIC.fullmatch(value):
            return {}
        written = earlier_calls + "\n" + call_text
        if not unused_slots(self.asked, written):
            return {}
        return {token: -self.penalty for token, before in self.table.closes_string
                if not (any(c.isdigit() for c in before) and not unused_slots(self.asked, written + before))}


class GroundedConstraint:
    """A response constraint whose calls lean to the conversation's numbers (token_bias); the rest is the
    wrapped constraint's."""

    def __init__(self, inner: ResponseConstraint, grounding: Grounding) -> None:
        self.inner = inner
        self.grounding = grounding
        self.call_start: int | None = None  # where the call being written starts in the response text

    def token_bias(self) -> torch.Tensor | None:
        """Log-weights to add to the model's next-token logits; None outside a call's arguments."""
        if not self.inner.in_call or not self.grounding.numbers:  # no numbers written: nothing to lean to
            return None
        text = self.inner.text
        bias = self.grounding.bias(text[-64:])  # only the number being written matters
        earlier_calls = "\n".join(str(value) for call in self.inner.tool_calls for value in call.args.values())
        for token, penalty in self.grounding.closing_bias(text[self.call_start or 0:], earlier_calls).items():
            bias[token] += penalty
        return bias

    def accept(self, token_id: int) -> Step:
        before = len(self.inner.text) if self.call_start is None else self.call_start
        return self._learn(self.inner.accept(token_id), before)

    def run_pending(self) -> Step:
        return self._learn(self.inner.run_pending(), len(self.inner.text))

    def _learn(self, step: Step, before: int) -> Step:
        """Where a call starts, and a tool result's numbers, which the calls after it may use."""
        self.call_start = before if self.inner.in_call else None
        if step.tool_call is not None and step.tool_call.result:
            self.grounding.add(numbers_in(step.tool_call.result))
        return step

    def fork(self) -> GroundedConstraint:
        other = GroundedConstraint(self.inner.fork(), self.grounding.copy())
        other.call_start = self.call_start
        return other

    def __getattr__(self, name: str) -> object:  # allowed_tokens, is_finished, tool_calls, text, ...
        return getattr(self.inner, name)


def conversation_numbers(messages: Iterable[dict[str, Any]], island_prefix: str) -> set[str]:
    """The numbers the user and the tools wrote: user and tool messages whole, an answer's island lines
    (`island_prefix`); never the system prompt (its worked examples) nor the model's own words."""
    found: set[str] = set()
    for message in messages:
        content = message.get("content") or ""
        if message["role"] in ("user", "tool"):
            found |= numbers_in(content)
        elif message["role"] == "assistant":
            found |= {n for line in content.splitlines() if line.startswith(island_prefix) for n in numbers_in(line)}
    return found


# keyed by the id of the tokenizer's byte table, which each entry holds on to: an id is only reused once its
# object is gone, and this one never goes while its entry is here
_TABLES: dict[tuple[int, int], tuple[Sequence[bytes], NumberTable]] = {}


def number_table(token_bytes: Sequence[bytes], width: int) -> NumberTable:
    """The NumberTable of a tokenizer (its tokens' bytes), made once."""
    key = (id(token_bytes), width)
    if key not in _TABLES:
        _TABLES[key] = (token_bytes, NumberTable([piece.decode("utf-8", "replace") for piece in token_bytes], width))
    return _TABLES[key][1]


def token_bias(constraint: ResponseConstraint | None) -> torch.Tensor | None:
    """The constraint's bias on the next token, if it has one (GroundedConstraint)."""
    bias = getattr(constraint, "token_bias", None)
    return bias() if bias is not None else None


def biased(logprobs: torch.Tensor, constraint: ResponseConstraint | None) -> torch.Tensor:
    """Next-token scores: the log-probs plus the constraint's bias (token_bias), not renormalised, so that a
    served model's top log-probs score exactly as the whole distribution does; as they are without a bias."""
    bias = token_bias(constraint)
    return logprobs if bias is None else logprobs + bias.to(logprobs.device, logprobs.dtype)
