"""calc: arithmetic parsed with a Lark grammar and evaluated by walking the tree (never `eval`).

Integers are exact (Python ints); `/` gives a float; floats are shown with 10 significant
digits and no trailing zeros. `**` is right-associative and binds tighter than unary minus
(`-2**2` is -4), as in Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from lark import Lark, Tree
from lark.exceptions import UnexpectedInput

from agent.tooling import Pattern, ToolFailure, tool

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

# Python refuses to print (or parse) ints over 4,300 digits by default (`sys.set_int_max_str_digits`);
# calc keeps the same limit on every Python version so that the message is ours, not the interpreter's.
MAX_DIGITS = 4300
MAX_INT_BITS = math.ceil(MAX_DIGITS * math.log2(10))  # refuse results beyond MAX_DIGITS before computing them

TOO_LARGE = "result too large"


def _check(value: Number) -> Number:
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        raise ToolFailure(TOO_LARGE)
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolFailure(TOO_LARGE)
    return value


def _int(text: str) -> int:
    if len(text) > MAX_DIGITS:  # int() itself would refuse it with the interpreter's message
        raise ToolFailure(f"number too long (more than {MAX_DIGITS} digits): {text[:20]}...")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ToolFailure(f"number too large: {text}")
    return value


def _add(a: Number, b: Number) -> Number:
    return _check(a + b)


def _sub(a: Number, b: Number) -> Number:
    return _check(a - b)


def _mul(a: Number, b: Number) -> Number:
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise ToolFailure(TOO_LARGE)
    return _check(a * b)


def _div(a: Number, b: Number) -> Number:
    if b == 0:
        raise ToolFailure("division by zero")
    return _check(a / b)


def _floordiv(a: Number, b: Number) -> Number:
    if b == 0:
        raise ToolFailure("division by zero")
    return _check(a // b)


def _mod(a: Number, b: Number) -> Number:
    if b == 0:
        raise ToolFailure("division by zero")
    return _check(a % b)


def _pow(a: Number, b: Number) -> Number:
    if a == 0 and b < 0:
        raise ToolFailure("division by zero")
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        if b * math.log2(abs(a)) > MAX_INT_BITS:
            raise ToolFailure(TOO_LARGE)
    result = a ** b
    if isinstance(result, complex):
        raise ToolFailure("result is not a real number (negative base with a fractional exponent)")
    return _check(result)


_OPERATIONS: dict[str, Callable[..., Number]] = {
    "add": _add, "sub": _sub, "mul": _mul, "div": _div, "floordiv": _floordiv, "mod": _mod, "pow": _pow,
    "neg": lambda a: -a, "pos": lambda a: a,
}


def _value(tree: Tree) -> Number:
    """Evaluate the parse tree bottom-up with an explicit stack.

    Not lark's Transformer: it recurses once per nesting level, so ~1,000 chained operators hit
    Python's recursion limit. Here depth costs list entries, not stack frames.
    """
    values: list[Number] = []
    todo: list[tuple[Tree, bool]] = [(tree, False)]
    while todo:
        node, children_done = todo.pop()
        if node.data in ("int", "float"):
            text = str(node.children[0])
            values.append(_int(text) if node.data == "int" else _float(text))
        elif not children_done:
            todo.append((node, True))
            todo.extend((child, False) for child in reversed(node.children))
        else:
            count = len(node.children)
            operands = values[-count:]
            del values[-count:]
            values.append(_OPERATIONS[str(node.data)](*operands))
    return values[0]


def format_number(value: Number) -> str:
    """Ints exactly; floats with 10 significant digits, no trailing zeros (2.0 -> 2)."""
    if isinstance(value, int):
        try:
            text = str(value)
        except ValueError:  # over the interpreter's int-str limit (Python 3.11+)
            raise ToolFailure(TOO_LARGE) from None
        if len(text.lstrip("-")) > MAX_DIGITS:  # the same limit where Python has none
            raise ToolFailure(TOO_LARGE)
        return text
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
        return _value(tree)
    except OverflowError:  # an int too large to become a float, a float power out of range
        raise ToolFailure(TOO_LARGE) from None


# What a call may write: numbers and operators, the grammar's lexemes in a row (parentheses not paired
# up: a regular expression cannot count them). A model then cannot write "15% of 840" or "64 km/h * 7
# hours" for calc to refuse; an unpaired parenthesis still gets calc's own error.
_NUMBER = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
_OPERAND = rf"[-+( ]*{_NUMBER}[) ]*"
EXPRESSION = rf"{_OPERAND}((\*\*|//|[-+*/%]){_OPERAND})*"


@tool(pure=True, timeout=5.0)
def calc(expr: Annotated[str, Pattern(EXPRESSION)]) -> str:
    """Evaluate an arithmetic expression (+ - * / ** % and parentheses).

    Also `//` (floor division) and unary minus; integers are exact.
    """
    return format_number(evaluate(expr))
