"""Grammar checks for users' Lark grammars (`agent grammar check`, `--grammar`): errors with their place.

A grammar is checked by llguidance, the engine that computes the masks (it reads a Lark dialect),
within bounds that `agent grammar check` and every run share (the run checks with this module too):
a size limit, llguidance's own count of symbols, so a huge grammar is refused at once; then a short
walk through the grammar on a byte-level tokenizer, which meets what the engine otherwise meets only
while decoding (a start rule no text can complete, a repetition or a choice too large for its
Earley rows). What the walk cannot reach still stops a run with the engine's reason, never a
traceback. Python's lark, which re-parses finished responses, can be asked for a second opinion.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lark import Lark, Tree
from lark.exceptions import UnexpectedInput
from llguidance import LLMatcher, LLParserLimits, LLTokenizer, TokenizerWrapper

from agent.grammar.errors import GrammarError

# The most symbols (in the grammar's productions, as llguidance counts them) a --grammar may have:
# 50,000 alternatives took llguidance 6 s and Python's lark minutes; 10,000 symbols take well under 1 s.
GRAMMAR_SIZE_LIMIT = 10_000
TRIAL_PATHS = 3  # walks through the grammar: the first, the last and a random allowed byte at each step
TRIAL_STEPS = 48  # bytes per walk

_LOCATION = re.compile(r"^(?:at )?(\d+)\((\d+)\):\s*")
_LARK_LOCATION = re.compile(r"line (\d+),? col(?:umn)? (\d+)")
_START_RULE = re.compile(r"^[ \t]*[?!]?start\b", re.MULTILINE)
_TOO_BIG = "grammar size (number of symbols) too big"


@dataclass
class GrammarIssue:
    """One problem in a grammar file, with its place."""

    line: int
    column: int
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.severity}: {self.message}"


def read_grammar_file(path: Path) -> str:
    """The text of a grammar file; GrammarError naming the file (and the bad byte's place) otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GrammarError(f"cannot read grammar {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8", errors="replace")) + 1
        raise GrammarError(f"grammar {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, "
                           f"column {column}") from None


def engine_limits() -> LLParserLimits:
    """The engine's bounds for a user grammar: the size limit, and short error messages."""
    return LLParserLimits(max_grammar_size=GRAMMAR_SIZE_LIMIT, verbose_errors=False)


def check_grammar(text: str, *, lark_compat: bool = False) -> list[GrammarIssue]:
    """Errors (line, column, message) that make a grammar unusable; empty when it is fine.

    With lark_compat, also report (as warnings) what llguidance warns about and when Python's
    lark cannot read the grammar, since lark is what parses finished responses.
    """
    if not text.strip():
        return [GrammarIssue(1, 1, "the grammar is empty")]
    grammar = LLMatcher.grammar_from_lark(text)
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar, limits=engine_limits())
    if is_error:
        return [_issue_from_llguidance(m, text) for m in messages]
    trial = _trial_walk(grammar, text)
    if trial is not None:
        return [trial]
    issues: list[GrammarIssue] = []
    if lark_compat:
        issues.extend(_issue_from_llguidance(m, text, "warning") for m in messages)
        issue = lark_issue(text)
        if issue is not None:
            issues.append(issue)
    return issues


def _issue_from_llguidance(message: str, text: str, severity: str = "error") -> GrammarIssue:
    """llguidance reports `at LINE(COL): message` (COL in bytes) and an excerpt; keep the place
    (in characters) and the first line, and say where an unclosed regex starts (the engine's lexer
    reports the end of the file for it)."""
    body = message.strip()
    match = _LOCATION.match(body)
    line = col = 0
    if match:
        line, col = int(match.group(1)), int(match.group(2))
        body = body[match.end():]
    first = body.splitlines()[0] if body else "invalid grammar"
    lines = text.splitlines()
    if first.startswith(_TOO_BIG):
        first = (f"the grammar is too large: more than {GRAMMAR_SIZE_LIMIT:,} symbols (rules, alternatives "
                 "and their parts), the limit for --grammar")
    elif line > len(lines):  # the lexer ran to the end of the file
        opened = _unclosed_regex(text)
        if opened is not None:
            return GrammarIssue(*opened, "this regular expression is never closed (no ending `/`)", severity)
        line, col = max(len(lines), 1), len(lines[-1]) + 1 if lines else 1
        first = f"{first} at the end of the grammar"
    elif 1 <= line <= len(lines) and col > 1:  # the engine counts bytes; a column counts characters
        col = len(lines[line - 1].encode("utf-8")[: col - 1].decode("utf-8", errors="ignore")) + 1
    return GrammarIssue(line, col, first, severity)


def _unclosed_regex(text: str) -> tuple[int, int] | None:
    """Where (line, column) a `/regex/` that never ends starts; `/` in comments and strings is skipped,
    as the engine's lexer does (`//` and `#` start comments, strings end on their line)."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif ch == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch == "/":
            end = i + 1
            while end < n and text[end] != "/":
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                line = text.count("\n", 0, i) + 1
                return line, i - (text.rfind("\n", 0, i) + 1) + 1
            i = end + 1
        else:
            i += 1
    return None


class _ByteTokens:
    """A tokenizer of single bytes plus an end token, for walking a grammar without a model."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([b]) for b in range(256)] + [b"<end>"]
    special_token_ids = [256]

    def __call__(self, data: bytes) -> list[int]:
        return list(data)


@cache
def _byte_tokenizer() -> LLTokenizer:
    return LLTokenizer(TokenizerWrapper(_ByteTokens()))


def _trial_walk(grammar: str, text: str) -> GrammarIssue | None:
    """Walk the grammar a few bytes deep, as decoding would; the first engine error, placed at the start rule."""
    start = _START_RULE.search(text)
    line = text.count("\n", 0, start.start()) + 1 if start else 1
    base = LLMatcher(_byte_tokenizer(), grammar, log_level=0, limits=engine_limits())
    for path in range(TRIAL_PATHS):
        matcher, rng, walked = base.deep_copy(), random.Random(path), b""
        for _ in range(TRIAL_STEPS):
            mask = b"" if matcher.is_error() else matcher.compute_bitmask()
            if matcher.is_error():
                return GrammarIssue(line, 1, _trial_message(matcher.get_error(), walked))
            allowed = [b for b in range(256) if mask[b >> 3] >> (b & 7) & 1]
            if not allowed:
                break  # only the end is allowed: this walk is complete
            byte = allowed[0] if path == 0 else allowed[-1] if path == 1 else rng.choice(allowed)
            if not matcher.consume_token(byte):
                return GrammarIssue(line, 1, _trial_message(matcher.get_error(), walked + bytes([byte])))
            walked += bytes([byte])
    return None


def _trial_message(error: str, walked: bytes) -> str:
    first = error.strip().splitlines()[0] if error.strip() else "refused"
    if first == "NoExtensionBias":
        return "no complete text matches this grammar (does a rule only refer to itself, like `start: start`?)"
    where = f"after the text {walked.decode('utf-8', errors='replace')!r}" if walked else "before any text"
    return f"the grammar engine gives up {where}: {first}"


def lark_issue(text: str) -> GrammarIssue | None:
    """A warning when Python's lark cannot read the grammar (responses then cannot be re-parsed)."""
    try:
        Lark(text, parser="earley", lexer="dynamic")
    except UnexpectedInput as exc:
        # lark declares line/column on UnexpectedInput but not every subclass sets them
        return GrammarIssue(getattr(exc, "line", 0) or 0, getattr(exc, "column", 0) or 0,
                            "Python's lark cannot read this (llguidance-only syntax?); "
                            "finished responses will not be re-parsed", "warning")
    except Exception as exc:  # lark raises several kinds (GrammarError, ValueError, ...) for grammar problems
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = _LARK_LOCATION.search(str(exc))
        line, col = (int(where.group(1)), int(where.group(2))) if where else (1, 1)
        return GrammarIssue(line, col, f"Python's lark cannot read this grammar ({first}); "
                            "llguidance can, but finished responses will not be re-parsed", "warning")
    return None


def parse_with_user_grammar(grammar_text: str, response: str) -> Tree:
    """Parse a finished response with Python's lark (Earley, like llguidance); raises on mismatch."""
    return Lark(grammar_text, parser="earley", lexer="dynamic").parse(response)
