"""The protocol's free text in both engines' renderings: text up to a call opening, and text with none.

llguidance (token masks) gets lazy lexemes and a negated regex; Python's `lark` (parsing the
finished response) gets equivalent regexes with a lookahead. `agent.grammar.protocol` appends them
to the turn grammar.
"""

from __future__ import annotations

SEARCH_TRIGGER = "SEARCH("
LOAD_TRIGGER = "LOAD("
CALL_TRIGGER = "CALL("

# No free-text line may start with the island arrow: a line `=> ...` is always a tool's result.
ISLAND_ARROW = "=> "
_ARROW_LINE = "\\n" + ISLAND_ARROW  # in a regex: a newline, then the arrow
_NO_ARROW_LLGUIDANCE = f"~/({ISLAND_ARROW}|(?s:.*){_ARROW_LINE})(?s:.*)/"


def _regex_alt(triggers: list[str]) -> str:
    return "|".join(t.replace("(", "\\(") for t in triggers)


def text_rules_llguidance(triggers: list[str]) -> str:
    """Free text for llguidance: lazy lexemes that end at the first call opening; a tail without one.
    Each starts at a line start, so "no line starts with `=> `" is: not `=> ` first, no `\\n=> ` inside."""
    lines = []
    for rule, trig in (("search_head", SEARCH_TRIGGER), ("load_head", LOAD_TRIGGER), ("call_head", CALL_TRIGGER)):
        if trig in triggers:
            lines.append(f"{rule}[lazy]: /(?s:.*){trig.replace('(', chr(92) + '(')}/ & {_NO_ARROW_LLGUIDANCE}")
    if triggers:
        lines.append(f"TAIL: /(?s:.+)/ & ~/(?s:.*)({_regex_alt(triggers)})(?s:.*)/ & {_NO_ARROW_LLGUIDANCE}")
    else:
        lines.append(f"TAIL: /(?s:.+)/ & {_NO_ARROW_LLGUIDANCE}")
    return "\n".join(lines) + "\n"


def text_rules_lark(triggers: list[str]) -> str:
    """The same free text for Python's lark: no call opening and no `\\n=> ` inside (a negative
    lookahead before each character), no `=> ` first."""
    free = f"(?:(?!{_regex_alt(triggers)}|{_ARROW_LINE})[\\s\\S])" if triggers else f"(?:(?!{_ARROW_LINE})[\\s\\S])"
    lines = []
    for rule, term, trig in (("search_head", "SEARCH_HEAD", SEARCH_TRIGGER), ("load_head", "LOAD_HEAD", LOAD_TRIGGER),
                             ("call_head", "CALL_HEAD", CALL_TRIGGER)):
        if trig in triggers:
            lines.append(f"{rule}: {term}")
            lines.append(f"{term}.2: /(?!{ISLAND_ARROW}){free}*{trig.replace('(', chr(92) + '(')}/")
    lines.append(f"TAIL: /(?!{ISLAND_ARROW}){free}+/")
    return "\n".join(lines) + "\n"
