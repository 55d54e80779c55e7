"""BFCL's AST rules for Python categories, kept here because its own checker cannot be imported as shipped.

`bfcl_eval.eval_checker.ast_eval.ast_checker` imports `bfcl_eval.constants.model_config`, which imports
every hosted model's client (anthropic, openai, google-genai, cohere, mistralai, boto3, writerai,
qwen_agent, tree_sitter, ...); `pip install --no-deps bfcl-eval` has none of them. The checker itself
uses that module for one thing: whether a model's names have dots turned into underscores.
`real_checker()` loads the real checker with that one module replaced by a single entry (no renaming),
so bench/bfcl.py and the tests can compare it with `check` on every answer.

The rules (a call list is `[{name: {param: value}}]`; an answer lists allowed values per parameter,
`""` among them meaning "may be left out"):
- simple categories: exactly one call; parallel ones (any category with "parallel" in its name): as
  many calls as answers, matched in any order; multiple ones: one call, checked against the one answer.
- a call: the expected name; every required parameter present; no parameter that is not both described
  and in the answer; each value of the described type (int is accepted for float, a tuple for a
  tuple, exact types otherwise, so True is no integer; a value of the answer's own type passes as a
  "variable"); strings compared after dropping spaces and `,./-_*^` and case, lists element-wise
  the same way, dicts key by key, lists of dicts in order; other values must be among the allowed
  ones; and an answer parameter without `""` must be given.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from typing import Any

_PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list,
                                  "tuple": list, "dict": dict, "any": str}
_NESTED = ("array", "tuple")  # types whose items are checked too (one level deep, as BFCL does)
_DROPPED = re.compile(r"[ ,./\-_*^]")


@dataclass
class Verdict:
    valid: bool
    error_type: str = ""  # BFCL's error kind, e.g. "simple_function_checker:wrong_func_name"
    error: str = ""


OK = Verdict(True)


def normalize(text: str) -> str:
    """How BFCL compares strings: no spaces or `,./-_*^`, lower case, single quotes as double."""
    return _DROPPED.sub("", text).lower().replace("'", '"')


def _norm(value: Any) -> Any:
    return normalize(value) if isinstance(value, str) else value


def _answer_type(allowed: list[Any]) -> type | None:
    """The type of the first allowed value that is not the 'may be left out' marker."""
    return next((type(a) for a in allowed if a != ""), None)


def _type_ok(value: Any, allowed: list[Any], expected: type, item_type: type | None) -> tuple[bool, bool]:
    """(valid, is_variable): BFCL's type check of one value against its described type."""
    answer_type = _answer_type(allowed)
    variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if item_type is None:
            return True, variable
        for option in allowed:  # each item must fit some allowed list (a non-list option passes)
            if not isinstance(option, list) or all(
                    _type_ok(v, option, item_type, None)[0] for v in value):
                return True, variable
        return False, variable
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, variable


def _dict_ok(value: dict[str, Any], options: list[Any]) -> Verdict:
    verdict = Verdict(False, "dict_checker:unclear")
    for option in options:
        if option == "":
            continue
        verdict = OK
        for key, item in value.items():
            if key not in option:
                verdict = Verdict(False, "value_error:dict_key", f"unexpected dict key {key!r}")
                break
            if _norm(item) not in [_norm(a) for a in option[key]]:
                verdict = Verdict(False, "value_error:dict_value", f"invalid value for {key!r}: {item!r}")
                break
        if verdict.valid:
            missing = [k for k, a in option.items() if k not in value and "" not in a]
            if missing:
                verdict = Verdict(False, "value_error:dict_key", f"missing dict key {missing[0]!r}")
        if verdict.valid:
            return OK
    return verdict


def _list_of_dicts_ok(value: list[Any], options: list[Any]) -> Verdict:
    verdict = Verdict(False, "list_dict_checker:unclear")
    for option in options:
        if len(value) != len(option):
            verdict = Verdict(False, "value_error:list_dict_count", "wrong number of dictionaries")
            continue
        for item, wanted in zip(value, option):
            verdict = _dict_ok(item, [wanted])
            if not verdict.valid:
                break
        else:
            return OK
    return verdict


def _value_ok(param: str, value: Any, allowed: list[Any], expected: type, item_type: type | None) -> Verdict:
    """The value check after the type check, by the described type."""
    if expected is dict:
        return _dict_ok(value, allowed)
    if expected is list and item_type is dict:
        return _list_of_dicts_ok(value, allowed)
    if expected is str:
        if normalize(value) in [normalize(a) for a in allowed if isinstance(a, str)]:
            return OK
        return Verdict(False, "value_error:string", f"invalid value for {param!r}: {value!r}")
    if expected is list:
        if [_norm(v) for v in value] in [[_norm(a) for a in option] for option in allowed]:
            return OK
        return Verdict(False, "value_error:list/tuple", f"invalid value for {param!r}: {value!r}")
    if value in allowed:
        return OK
    return Verdict(False, "value_error:others", f"invalid value for {param!r}: {value!r}")


def check_call(function: dict[str, Any], call: dict[str, Any], answer: dict[str, Any]) -> Verdict:
    """One call `{name: params}` against one function description and one answer `{name: {param: allowed}}`."""
    allowed_by_param = next(iter(answer.values()))
    name = function["name"]
    described = function["parameters"]["properties"]
    if name not in call:
        return Verdict(False, "simple_function_checker:wrong_func_name", f"function {name!r} not called")
    given = call[name]
    for param in function["parameters"]["required"]:
        if param not in given:
            return Verdict(False, "simple_function_checker:missing_required", f"missing {param!r}")
    for param, value in given.items():
        if param not in described or param not in allowed_by_param:
            return Verdict(False, "simple_function_checker:unexpected_param", f"unexpected {param!r}")
        kind = described[param]["type"]
        expected = _PYTHON_TYPES[kind]
        item_type = _PYTHON_TYPES[described[param]["items"]["type"]] if kind in _NESTED else None
        if kind == "tuple" and type(value) is tuple:
            value = list(value)
        if kind == "float" and type(value) is int:
            value = float(value)
        allowed = allowed_by_param[param]
        valid, variable = _type_ok(value, allowed, expected, item_type)
        if not valid:
            return Verdict(False, "type_error:simple", f"wrong type for {param!r}: {type(value).__name__}")
        if variable:  # a value of the answer's type (a variable's name): only membership is checked
            if value not in allowed:
                return Verdict(False, "value_error:others", f"invalid value for {param!r}: {value!r}")
            continue
        verdict = _value_ok(param, value, allowed, expected, item_type)
        if not verdict.valid:
            return verdict
    for param, allowed in allowed_by_param.items():
        if param not in given and "" not in allowed:
            return Verdict(False, "simple_function_checker:missing_optional", f"{param!r} not given")
    return OK


def _described(functions: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((f for f in functions if f["name"] == name), None)


def check(category: str, functions: list[dict[str, Any]], calls: list[dict[str, Any]],
          answers: list[dict[str, Any]]) -> Verdict:
    """A response's calls against a case's answers, by the category's rule (see the module docstring)."""
    if "parallel" in category:
        if len(calls) != len(answers):
            return Verdict(False, "parallel_function_checker_no_order:wrong_count", "wrong number of calls")
        used: set[int] = set()
        for answer in answers:
            function = _described(functions, next(iter(answer)))
            match = next((i for i, call in enumerate(calls)
                          if i not in used and check_call(function, call, answer).valid), None) \
                if function is not None else None
            if match is None:
                return Verdict(False, "parallel_function_checker_no_order:cannot_find_match",
                               f"no call matches {next(iter(answer))!r}")
            used.add(match)
        return OK
    if "multiple" in category:
        if len(calls) != len(answers):
            return Verdict(False, "multiple_function_checker:wrong_count", "wrong number of calls")
        function = _described(functions, next(iter(answers[0])))
        if function is None:
            return Verdict(False, "multiple_function_checker:no_description", "answer names no described function")
        return check_call(function, calls[0], answers[0])
    if len(calls) != 1:
        return Verdict(False, "simple_function_checker:wrong_count", "wrong number of calls")
    return check_call(functions[0], calls[0], answers[0])


REAL_MODEL_NAME = "agent-bench"  # the name the real checker is told; it renames nothing


def real_checker() -> Any:
    """BFCL's own `ast_checker` function, loaded with `bfcl_eval.constants.model_config` replaced by a
    mapping that holds REAL_MODEL_NAME only (the real module imports every hosted model's client)."""
    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        shim = types.ModuleType(name)
        shim.MODEL_CONFIG_MAPPING = {REAL_MODEL_NAME.replace("_", "/"): types.SimpleNamespace(underscore_to_dot=False)}
        sys.modules[name] = shim
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    def run(category: str, functions: list[dict[str, Any]], calls: list[dict[str, Any]],
            answers: list[dict[str, Any]]) -> bool:
        return bool(ast_checker(functions, calls, answers, Language.PYTHON, category, REAL_MODEL_NAME)["valid"])

    return run
