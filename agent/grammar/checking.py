"""Grammar checks for users' Lark grammars (`agent grammar check`, `--grammar`): errors with their place.

A grammar is checked by llguidance, the engine that computes the masks (it reads a Lark
dialect); Python's lark, which re-parses finished responses, can be asked for a second opinion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lark import Lark, Tree
from lark.exceptions import UnexpectedInput
from llguidance import LLMatcher

_LOCATION = re.compile(r"^(?:at )?(\d+)\((\d+)\):\s*")
_LARK_LOCATION = re.compile(r"line (\d+),? col(?:umn)? (\d+)")


@dataclass
class GrammarIssue:
    """One problem in a grammar file, with its place."""

    line: int
    column: int
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.severity}: {self.message}"


def _issue_from_llguidance(message: str, severity: str = "error") -> GrammarIssue:
    """llguidance reports `at LINE(COL): message` followed by an excerpt; keep place and first line."""
    text = message.strip()
    match = _LOCATION.match(text)
    line = col = 0
    if match:
        line, col = int(match.group(1)), int(match.group(2))
        text = text[match.end():]
    first = text.splitlines()[0] if text else "invalid grammar"
    return GrammarIssue(line, col, first, severity)


def check_grammar(text: str, *, lark_compat: bool = False) -> list[GrammarIssue]:
    """Errors (line, column, message) that make a grammar unusable; empty when it is fine.

    With lark_compat, also report (as warnings) what llguidance warns about and when Python's
    lark cannot read the grammar, since lark is what parses finished responses.
    """
    issues: list[GrammarIssue] = []
    if not text.strip():
        return [GrammarIssue(1, 1, "the grammar is empty")]
    is_error, messages = LLMatcher.validate_grammar_with_warnings(LLMatcher.grammar_from_lark(text))
    if is_error:
        issues.extend(_issue_from_llguidance(m) for m in messages)
        return issues
    if lark_compat:
        issues.extend(_issue_from_llguidance(m, "warning") for m in messages)
        issue = lark_issue(text)
        if issue is not None:
            issues.append(issue)
    return issues


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
