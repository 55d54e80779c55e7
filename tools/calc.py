"""calc: arithmetic parsed with a Lark grammar and evaluated by walking the tree (never `eval`).

Integers are exact (Python ints); `/` gives a float; floats are shown with 10 significant
digits and no trailing zeros. `**` is right-associative and binds tighter than unary minus
(`-2**2` is -4), as in Python.
"""

from __future__ import annotations

import math

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from agent.tooling import ToolFailure, tool

Number = int | float

GRAMMAR = r"""
?start: sum
?sum: product
    | sum "+" product   -> add
    | sum "-" product   -> sub
?product: unary
    | product "*" unary  -> mul
    | product "/" unary  -> div
    | product "//" unary -> floordiv
    | product "%" unary  -> mod
?unary: power
    | "-" unary -> neg
    | "+" unary -> pos
?power: atom
    | atom "**" unary -> pow
?atom: INT -> int
    | FLOAT -> float
    | "(" sum ")"

INT: /[0-9]+/
FLOAT: /[0-9]+\.[0-9]*([eE][+-]?[0-9]+)?/ | /\.[0-9]+([eE][+-]?[0-9]+)?/ | /[0-9]+[eE][+-]?[0-9]+/
%import common.WS
%ignore WS
"""

_parser = Lark(GRAMMAR, parser="lalr")

MAX_INT_BITS = 100_000  # refuse results beyond ~30,000 digits instead of hanging


def _check(value: Number) -> Number:
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        raise ToolFailure("result too large")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolFailure("result too large")
    return value


@v_args(inline=True)
class _Eval(Transformer):
    def int(self, tok) -> int:
        return int(tok)

    def float(self, tok) -> float:
        return float(tok)

    def add(self, a: Number, b: Number) -> Number:
        return _check(a + b)

    def sub(self, a: Number, b: Number) -> Number:
        return _check(a - b)

    def mul(self, a: Number, b: Number) -> Number:
        if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
            raise ToolFailure("result too large")
        return _check(a * b)

    def div(self, a: Number, b: Number) -> Number:
        if b == 0:
            raise ToolFailure("division by zero")
        try:
            return _check(a / b)
        except OverflowError:
            raise ToolFailure("result too large") from None

    def floordiv(self, a: Number, b: Number) -> Number:
        if b == 0:
            raise ToolFailure("division by zero")
        return _check(a // b)

    def mod(self, a: Number, b: Number) -> Number:
        if b == 0:
            raise ToolFailure("division by zero")
        return _check(a % b)

    def neg(self, a: Number) -> Number:
        return -a

    def pos(self, a: Number) -> Number:
        return a

    def pow(self, a: Number, b: Number) -> Number:
        if a == 0 and b < 0:
            raise ToolFailure("division by zero")
        if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
            if b * math.log2(abs(a)) > MAX_INT_BITS:
                raise ToolFailure("result too large")
        try:
            result = a ** b
        except OverflowError:
            raise ToolFailure("result too large") from None
        if isinstance(result, complex):
            raise ToolFailure("result is not a real number (negative base with a fractional exponent)")
        return _check(result)


def format_number(value: Number) -> str:
    """Ints exactly; floats with 10 significant digits, no trailing zeros (2.0 -> 2)."""
    if isinstance(value, int):
        return str(value)
    text = f"{value:.10g}"
    return "0" if text == "-0" else text


def evaluate(expr: str) -> Number:
    """The value of an arithmetic expression; ToolFailure with the column for bad input."""
    if not expr.strip():
        raise ToolFailure("empty expression")
    try:
        tree = _parser.parse(expr)
    except UnexpectedInput as exc:
        raise ToolFailure(f"cannot parse the expression at column {exc.column}: {expr!r}") from None
    try:
        return _Eval().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, ToolFailure):
            raise exc.orig_exc from None
        raise


@tool(pure=True, timeout=5.0)
def calc(expr: str) -> str:
    """Evaluate an arithmetic expression (+ - * / ** % and parentheses).

    Also `//` (floor division) and unary minus; integers are exact.
    """
    return format_number(evaluate(expr))
