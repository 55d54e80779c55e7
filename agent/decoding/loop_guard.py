"""The loop guard: does a response go round in circles, exactly or with small edits?

A looping answer says the same thing again and again, often with a character changed here and
there ("98765 - 43210 = 98765 + 43210 = 98765 + 43210 = ..."). Lists, tables and code repeat too,
but their repeats are short runs of structure ("\\n2. ", " | ", "    return self.") with new
content every few characters. The guard tells them apart by the **share of repeated n-grams**
over the end of the text:

- a position is *repeated* when the NGRAM characters ending there also ended at a position less
  than WINDOW characters before;
- the text loops when some WINDOW characters hold at least LOOP_CHARS repeated positions.

A repeat must run NGRAM characters unchanged to count at all, so structure with fresh content at
least every NGRAM characters never counts; an edit in a repeated block only uncovers the NGRAM
positions after it, so a block repeated with small edits still counts. The threshold is a count
(not a share of what there is), so short answers must have gone round for a while too.

It reads characters, not tokens: a window of tokens is a few words with one tokenizer and a line
with another (digits one token each, or byte-level pieces), and the same thresholds must hold for
every model. The calibration (written before the thresholds were chosen; loops from the issue
and its kind, lists, tables, code, YAML, HTML, JSON calls, grids of numbers) put the loops at 63
or more repeated positions of 128 and the legitimate repeats at 33 or fewer; LOOP_CHARS is between.

A loop can also count ("98765 + 43210 = 98766 + 43210 = 98767 + 43210 = ..."): every repeat changes a
number, so no NGRAM characters repeat unchanged. The guard therefore also reads the text's *shape*,
each run of digits as one "#", and counts a shape repeat only within one line, where it holds more
than numbers and spacing and crosses no list or table separator (`, ; | tab`): a list of numbers ("2, 3,
5, 7, ..."), a table, a grid or log lines repeat their shape with new numbers and are no loop; an
equation or sentence restated on the same line with a changed number is.

Known to be flagged though legitimate: lines that share NGRAM or more characters exactly in most of
every line (a server log of one request repeated with new timestamps), and a grid whose rows repeat
exactly every few rows.

`ends_in_loop` is checked as a branch grows (agent.decoding.token_tree cuts the branch there);
`has_loop` asks whether any window of a finished response loops (agent.decoding.scoring ranks it
below every normal response).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.tooling import ToolFailure
from agent.tools.calc import evaluate

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

NGRAM = 16  # characters a repeat must run unchanged to count
WINDOW = 128  # characters: how far back a repeat may start, and the span the count is taken over
LOOP_CHARS = 48  # repeated positions within WINDOW characters that make a loop
# Tokens decoded to read the end of a branch: enough for 2 * WINDOW characters with any tokenizer.
TAIL_TOKENS = 2 * WINDOW


_DIGITS = re.compile(r"\d+")
_SEPARATORS = re.compile(r"[,;|\t\n]")
_ONLY_NUMBERS = re.compile(r"[#\s.]*")  # a shape of numbers and spacing alone: a grid, not a sentence


def shape(text: str) -> str:
    """The text with each run of digits as one '#': what stays when a loop counts."""
    return _DIGITS.sub("#", text)


def _counts_as_shape(gram: str) -> bool:
    return not _SEPARATORS.search(gram) and not _ONLY_NUMBERS.fullmatch(gram)


def repeated_positions(text: str, counts: Callable[[str], bool] | None = None) -> list[bool]:
    """For each character: do the NGRAM characters ending there repeat ones that ended within WINDOW before
    (and, with `counts`, is that n-gram one that may count)?"""
    last_end: dict[str, int] = {}
    flags = [False] * len(text)
    for end in range(NGRAM - 1, len(text)):
        gram = text[end - NGRAM + 1:end + 1]
        previous = last_end.get(gram)
        flags[end] = previous is not None and end - previous < WINDOW and (counts is None or counts(gram))
        last_end[gram] = end
    return flags


def _tail(text: str) -> tuple[str, str, str]:
    """The end of the text a window's repeats can reach (a repeat may start WINDOW earlier), its last line,
    and that line's shape."""
    tail = text[-2 * WINDOW:]
    last_line = tail.rsplit("\n", 1)[-1]
    return tail, last_line, shape(last_line)


def _repeated_at_end(tail: str, line_shape: str) -> int:
    """Repeated positions among the last WINDOW characters, exactly or in the last line's shape."""
    exact = sum(repeated_positions(tail)[-WINDOW:])
    counting = sum(repeated_positions(line_shape, _counts_as_shape)[-WINDOW:])
    return max(exact, counting)


def repeated_share(text: str) -> float:
    """Share of the last WINDOW characters that are repeated, exactly or in shape (0.0 for texts too short)."""
    tail, _, line_shape = _tail(text)
    return _repeated_at_end(tail, line_shape) / WINDOW


# An equation restated with new numbers, back to back ("# + # = " three times over), or a sum set equal to
# sums three times running ("# - # = # - # = # + # = # + #"): chains of '=' that no calculation writes;
# caught early, where the repeat count above needs longer text. And a number whose thousands go on and on
# (",000" eleven times: 10^33 and up, written out).
_EQUATION_CHAIN = re.compile(r"([^=\n]*=[^=\n]*?)\1{2,}")
_SUMS_EQUAL = re.compile(r"(?:#\s*[-+*/x]\s*#\s*=\s*){3}#")
_ENDLESS_NUMBER = re.compile(r"(,\d{3})\1{10}")
# A finished answer that stops inside a number's thousands after six groups alike ("179,840,000,...,000,00"):
# the token limit cut a number that was still running (ten groups, where the Sun's mass written out has nine).
# Only the end of a finished answer tells: a number being written ends inside a group at every step.
_CUT_RUNAWAY = re.compile(r"(,\d{3})\1{5,},\d{0,2}$")
CHAIN_CHARS = 6  # the shortest repeated block that counts ("# = # " is shorter than any equation)


# Words that set one side equal to another, read as '=' by the chains above ("# - # is # - #, which is # + #").
_EQUALS_WORDS = re.compile(r",?\s+(?:which is|which equals|that is|is equal to|equals|is)\s+")


def _equation_chain(line_shape: str) -> bool:
    line_shape = _EQUALS_WORDS.sub(" = ", line_shape)
    match = _EQUATION_CHAIN.search(line_shape)
    return (match is not None and len(match.group(1)) >= CHAIN_CHARS and "#" in match.group(1)) or \
        _SUMS_EQUAL.search(line_shape) is not None


def _runaway(line: str, line_shape: str) -> bool:
    """The line holds an equation chain in its shape or (as written) a number that does not end."""
    return _equation_chain(line_shape) or _ENDLESS_NUMBER.search(line) is not None


# Loops line by line: the same line again and again, or an equation restated with one number changed
# ("1234 * 2 = 1234", "1234 * 3 = 1234", ...): each line too short for the repeat count and its shape
# repeated across lines, which a list, a table or a log does too. What tells them apart: a list's lines say
# something new (their shapes differ), a times table changes two numbers a line, a grid or a log holds no
# equation; a restated equation changes one number and says nothing else new.
# The same goes round with two numbers changed a line ("1234 * 4 = 244", "1234 * 5 = 445", ...: the shape
# of a times table, but a times table holds) or with its form changing ("1234 = 1234 * 2", "1234 = 7006652",
# ...): a run of equations, a line each, that states false results is made up.
SAME_LINES = 3  # the same line (of MIN_LINE_CHARS or more) this many times in a row
COUNTED_LINES = 5  # equations in a row, each the one before again or with one number changed
FALSE_EQUATIONS = 3  # false ones among equations, a line each, in a row
MIN_LINE_CHARS = 8
_NUMBERS_AND_SEPARATORS = re.compile(r"[\d\s.,;:|\-]*")  # a row of a grid or a table of numbers
# One side of an equation a line states: numbers, + - * / (x and × for *) and parentheses; not calc's ** or //.
_ARITHMETIC = re.compile(r"(?!.*(?:\*\*|//|x\s*x))[\d\s.+\-*/x×()]*\d[\d\s.+\-*/x×()]*")


def equation_holds(line: str) -> bool | None:
    """For a line that is nothing but arithmetic set equal ("12 x 4 = 48", "9 * 9 = 81 = 80 + 1"): does it
    hold, to the digits its plain numbers show? None for any other line. Each side is evaluated by the calc
    tool's own evaluator (a parse tree, never `eval`, with its bounds on large results)."""
    sides = line.rstrip(" .!").split("=")
    if len(sides) < 2 or not all(_ARITHMETIC.fullmatch(side) for side in sides):
        return None
    values: list[float] = []
    for side in sides:
        expression = side.replace("x", "*").replace("×", "*").strip()
        if len(expression) > 60:
            return None  # not a line of sums
        try:
            values.append(evaluate(expression))
        except ToolFailure:  # not arithmetic after all ("3 * * 4"), division by zero, too large
            return None
    shown = [len(side.strip().split(".")[1]) for side in sides if re.fullmatch(r"\s*-?\d+\.\d+\s*", side)]
    tolerance = 0.5 * 10 ** -max(shown) if shown else 0.5  # a result is rounded to the digits it shows
    return all(abs(value - values[-1]) <= tolerance + 1e-9 * abs(value) for value in values)


def _counted(line: str, before: str) -> bool:
    """Is the equation `line` the equation `before` again, or with one number changed, and nothing else?"""
    if "=" not in line or _SEPARATORS.search(line) or shape(line) != shape(before):
        return False  # a statement (an equation), not a list, a table or a log line
    changed = [a for a, b in zip(_DIGITS.findall(line), _DIGITS.findall(before)) if a != b]
    return len(changed) <= 1


def _line_loop(lines: list[str]) -> bool:
    """Do the lines hold SAME_LINES equal lines in a row, COUNTED_LINES counted ones, or FALSE_EQUATIONS
    false ones among equations a line each, in a row (see above)?"""
    same = counted = 1
    false = 0
    for index, line in enumerate(lines):
        text, before = line.strip(), lines[index - 1].strip() if index else None
        holds = equation_holds(text)
        if holds is None:
            false = 0  # a run of equations, a line each, starts again
        false += holds is False
        if before is not None:
            repeat = text == before and len(text) >= MIN_LINE_CHARS and not _NUMBERS_AND_SEPARATORS.fullmatch(text)
            same = same + 1 if repeat else 1
            counted = counted + 1 if _counted(text, before) else 1
        if same >= SAME_LINES or counted >= COUNTED_LINES or false >= FALSE_EQUATIONS:
            return True
    return False


def ends_in_loop(text: str) -> bool:
    """True when the last WINDOW characters loop (checked as a branch grows)."""
    tail, last_line, line_shape = _tail(text)
    return _repeated_at_end(tail, line_shape) >= LOOP_CHARS or _runaway(last_line, line_shape) or \
        _line_loop(tail.split("\n")[:-1])  # whole lines only: the last may still be growing


def has_loop(text: str) -> bool:
    """True when any WINDOW characters of the finished text loop, exactly or in shape (a loop in the middle
    counts too), or it stops inside a runaway number."""
    lines = text.split("\n")
    if _any_window_loops(repeated_positions(text)) or _line_loop(lines) or _CUT_RUNAWAY.search(text):
        return True
    for line in lines:
        line_shape = shape(line)
        if _any_window_loops(repeated_positions(line_shape, _counts_as_shape)) or _runaway(line, line_shape):
            return True
    return False


def _any_window_loops(flags: list[bool]) -> bool:
    count = 0
    for end, flag in enumerate(flags):
        count += flag
        if end >= WINDOW and flags[end - WINDOW]:
            count -= 1
        if count >= LOOP_CHARS:
            return True
    return False


def model_text(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int], island_mask: Sequence[bool],
               tail_tokens: int | None = None) -> str:
    """The text of the tokens the model chose (islands left out: a tool result is not the model repeating
    itself); only the last `tail_tokens` of them when given."""
    segments: list[list[int]] = [[]]  # the model's own runs of tokens, between islands
    for token, island in zip(token_ids, island_mask, strict=True):
        if island:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append(token)
    if tail_tokens is not None:
        kept: list[list[int]] = []
        for segment in reversed(segments):
            if tail_tokens <= 0:
                break
            kept.insert(0, segment[-tail_tokens:])
            tail_tokens -= len(segment)
        segments = kept
    # An island ends a line: the model's text before a tool result and after it are not one line.
    return "\n".join(tokenizer.decode(segment, skip_special_tokens=True) for segment in segments if segment)
