"""NativeConstraint on tiny random models under real chat templates: tool choice (auto, required,
a name, none), calls that parse and run, islands in the template's form, every strategy, the
argument schema enforced token by token, side effects deferred, rollback across islands."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest
import torch

from agent.config import STRATEGIES, DecodeConfig
from agent.decoding.results import SearchResult
from agent.decoding.search import search_response
from agent.grammar.errors import GrammarError
from agent.grammar.native import NativeConstraint, make_native_constraint, native_format, native_system_prompt
from agent.model.chat_format import prompt_token_ids
from agent.model.runtime import LoadedModel
from agent.tooling import tool
from agent.tooling.json_schema import tool_schemas
from agent.tooling.registry import ToolRegistry
from agent.tooling.spec import ToolFailure
from test_native_formats import FORMAT_NAMES, build_lm, build_tokenizer, weather

OPENERS = {"hermes": "<tool_call>", "llama3": "<|python_tag|>", "mistral": "[TOOL_CALLS]"}


@tool
def echo(text: str) -> str:
    """Say the text back."""
    return f"echo: {text}"


@tool
def pick(color: Literal["red", "green"], n: int, flag: bool = False) -> str:
    """Pick a color n times."""
    return f"{color} x{n} {flag}"


@tool
def fail(text: str) -> str:
    """Always fails."""
    raise ToolFailure(f"no luck with {text!r}")


@tool(pure=False)
def remember(text: str) -> str:
    """Remember something (a side effect)."""
    return "remembered"


def registry_of(*tools: object) -> ToolRegistry:
    registry = ToolRegistry()
    for t in tools:
        registry.register(t)
    return registry


@pytest.fixture(scope="module")
def lms() -> dict[str, LoadedModel]:
    return {name: build_lm(name) for name in FORMAT_NAMES}


def prompt_ids(lm: LoadedModel, registry: ToolRegistry, question: str = "What is the weather in Paris?") -> list[int]:
    messages = [{"role": "system", "content": native_system_prompt()}, {"role": "user", "content": question}]
    return prompt_token_ids(lm.tokenizer, messages, tools=tool_schemas(registry))


def respond(lm: LoadedModel, registry: ToolRegistry, fmt: str, choice: str, strategy: str = "greedy",
            seed: int = 0, max_new_tokens: int = 40, budget: int = 48, **options: object) -> SearchResult:
    config = DecodeConfig(strategy=strategy, seed=seed, max_new_tokens=max_new_tokens, budget=budget, beam_width=2,
                          num_samples=2, top_candidates=2, grad_steps=1)

    def make() -> NativeConstraint:
        return make_native_constraint(lm, registry, fmt, tool_choice=choice, **options)

    return search_response(lm, prompt_ids(lm, registry), config, make_constraint=make)


def feed(constraint: NativeConstraint, lm: LoadedModel, text: str) -> list:
    """Accept the tokens of `text` one by one; the steps."""
    return [constraint.accept(t) for t in lm.tokenizer.encode(text, add_special_tokens=False)]


def call_text(fmt: str, name: str, args: str) -> str:
    key = "parameters" if fmt == "llama3" else "arguments"
    body = f'{{"name": "{name}", "{key}": {args}}}'
    return {"hermes": f"<tool_call>\n{body}\n</tool_call>", "llama3": body, "mistral": f"[TOOL_CALLS][{body}]"}[fmt]


# -- tool choice -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_required_opens_with_a_call_that_runs_and_the_model_goes_on_after_its_island(lms: dict, fmt: str) -> None:
    lm = lms[fmt]
    registry = registry_of(weather, echo)
    best = respond(lm, registry, fmt, "required").best
    record = best.tool_calls[0]
    form = native_format(lm.tokenizer, fmt)
    assert record.tool in ("weather", "echo") and record.error is None and record.result
    assert form.parse_call(record.call_text, registry) == (record.tool, record.args)
    assert best.text.startswith(record.call_text + form.island_text(record.result, None, 1000))
    assert record.island_text == form.island_text(record.result, None, 1000)
    first_island = best.island_mask.index(True)
    island_end = first_island + best.island_mask[first_island:].index(False)
    island_ids = best.token_ids[first_island:island_end]
    assert island_ids == form.island_ids(record.result, None, 1000)
    assert len(best.token_ids) > island_end  # the model wrote on after the result


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_a_named_choice_calls_that_tool(lms: dict, fmt: str) -> None:
    best = respond(lms[fmt], registry_of(weather, echo), fmt, "weather", seed=3).best
    record = best.tool_calls[0]
    assert record.tool == "weather" and isinstance(record.args["city"], str) and "21" in record.result


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_none_never_calls(lms: dict, fmt: str) -> None:
    lm = lms[fmt]
    registry = registry_of(weather, echo)
    constraint = make_native_constraint(lm, registry, fmt, tool_choice="none")
    allowed = constraint.allowed_tokens()
    opener = lm.tokenizer.convert_tokens_to_ids(OPENERS[fmt])
    assert not allowed[opener] and allowed.sum() > 100
    if fmt == "llama3":  # a Llama 3 call is a message starting with `{`
        assert not allowed[lm.tokenizer.convert_tokens_to_ids("{")]
    for seed in range(3):
        best = respond(lm, registry, fmt, "none", strategy="sample", seed=seed, max_new_tokens=24).best
        assert best.tool_calls == [] and OPENERS[fmt] not in best.text


def test_auto_lets_the_model_write_words_or_call(lms: dict) -> None:
    lm = lms["hermes"]
    constraint = make_native_constraint(lm, registry_of(echo), "hermes")
    opener = lm.tokenizer.convert_tokens_to_ids("<tool_call>")
    words = lm.tokenizer.encode("hello", add_special_tokens=False)[0]
    allowed = constraint.allowed_tokens()
    assert allowed[opener] and allowed[words] and allowed[lm.tokenizer.eos_token_id]
    feed(constraint, lm, "Let me check. ")
    steps = feed(constraint, lm, call_text("hermes", "echo", '{"text": "hi"}'))
    assert steps[-1].tool_call is not None and steps[-1].tool_call.result == "echo: hi"
    assert constraint.text.startswith("Let me check. <tool_call>")
    assert constraint.text.endswith("<|im_start|>assistant\n")


def test_unknown_choices_are_refused(lms: dict) -> None:
    lm = lms["hermes"]
    with pytest.raises(ValueError, match="not a registered tool"):
        make_native_constraint(lm, registry_of(echo), "hermes", tool_choice="weather")
    with pytest.raises(ValueError, match="needs at least one registered tool"):
        make_native_constraint(lm, ToolRegistry(), "hermes", tool_choice="required")


# -- every strategy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_makes_the_forced_call_and_keeps_its_island(lms: dict, strategy: str) -> None:
    lm = lms["hermes"]
    # a budget that lets the searches finish an answer (one cut off mid-call is not the point here)
    result = respond(lm, registry_of(weather, echo), "hermes", "weather", strategy=strategy, max_new_tokens=40,
                     budget=200)
    best = result.best
    record = best.tool_calls[0]
    assert record.tool == "weather" and record.error is None
    assert record.island_text in best.text and "<|im_start|>user\n<tool_response>\n" in best.text


# -- the schema ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_arguments_must_match_the_schema_token_by_token(lms: dict, fmt: str) -> None:
    lm = lms[fmt]
    registry = registry_of(pick, echo)
    wrong = {"an unknown enum value": ("pick", '{"color": "blue", "n": 1}'),
             "an int as a string": ("pick", '{"color": "red", "n": "1"}'),
             "a float for an int": ("pick", '{"color": "red", "n": 1.5}'),
             "a missing required key": ("pick", '{"color": "red"}'),
             "an extra key": ("pick", '{"color": "red", "n": 1, "size": 2}'),
             "another tool's argument": ("echo", '{"color": "red"}'),
             "an unknown tool": ("peek", '{"color": "red", "n": 1}')}
    for why, (name, args) in wrong.items():
        constraint = make_native_constraint(lm, registry, fmt, tool_choice="required")
        with pytest.raises(GrammarError, match="does not fit"):
            feed(constraint, lm, call_text(fmt, name, args))
            pytest.fail(f"{why} was accepted")
    constraint = make_native_constraint(lm, registry, fmt, tool_choice="required")
    steps = feed(constraint, lm, call_text(fmt, "pick", '{"color": "green", "n": 2, "flag": true}'))
    assert steps[-1].tool_call.result == "green x2 True"


def test_a_random_model_can_only_write_valid_arguments(lms: dict) -> None:
    lm = lms["mistral"]
    registry = registry_of(pick)
    for seed in range(4):
        best = respond(lm, registry, "mistral", "pick", strategy="sample", seed=seed, max_new_tokens=40).best
        record = best.tool_calls[0]
        assert record.error is None and record.args["color"] in ("red", "green")
        assert isinstance(record.args["n"], int) and set(record.args) <= {"color", "n", "flag"}


# -- results, side effects, limits -----------------------------------------------------------------------
def test_a_failing_tool_gives_an_error_island_in_the_template_form(lms: dict) -> None:
    lm = lms["llama3"]
    constraint = make_native_constraint(lm, registry_of(fail), "llama3", tool_choice="required")
    step = feed(constraint, lm, call_text("llama3", "fail", '{"text": "x"}'))[-1]
    form = native_format(lm.tokenizer, "llama3")
    assert step.forced_is_island and step.forced_token_ids == form.island_ids(None, "no luck with 'x'", 1000)
    assert lm.tokenizer.decode(step.forced_token_ids) == form.island.prefix + '"error: no luck with \'x\'"' + (
        form.island.suffix)


def test_a_side_effect_call_waits_for_its_branch_then_runs(lms: dict) -> None:
    lm = lms["hermes"]
    asked = []
    constraint = make_native_constraint(lm, registry_of(remember), "hermes", tool_choice="remember",
                                        confirm=lambda record: asked.append(record.tool) or True,
                                        defer_side_effects=True)
    step = feed(constraint, lm, call_text("hermes", "remember", '{"text": "milk"}'))[-1]
    assert not step.forced_token_ids and step.tool_call is not None and step.tool_call.result is None
    assert constraint.is_finished() and constraint.pending_call.args == {"text": "milk"} and asked == []
    other = constraint.fork()
    island = constraint.run_pending()
    assert island.tool_call is step.tool_call and step.tool_call.result == "remembered" and asked == ["remember"]
    assert constraint.pending_call is None and not constraint.is_finished()
    assert other.pending_call is not None and other.pending_call.record.result is None  # its own record


def test_after_max_calls_no_call_can_open(lms: dict) -> None:
    lm = lms["hermes"]
    opener = lm.tokenizer.convert_tokens_to_ids("<tool_call>")
    constraint = make_native_constraint(lm, registry_of(echo), "hermes", max_calls=1)
    feed(constraint, lm, call_text("hermes", "echo", '{"text": "a"}'))
    assert len(constraint.tool_calls) == 1 and not constraint.allowed_tokens()[opener]
    unlimited = make_native_constraint(lm, registry_of(echo), "hermes")
    feed(unlimited, lm, call_text("hermes", "echo", '{"text": "a"}'))
    assert unlimited.allowed_tokens()[opener]


def test_near_the_token_limit_no_call_opens_and_an_open_call_is_closed(lms: dict) -> None:
    lm = lms["hermes"]
    opener = lm.tokenizer.convert_tokens_to_ids("<tool_call>")
    constraint = make_native_constraint(lm, registry_of(echo), "hermes")
    feed(constraint, lm, "Hi")
    constraint.set_tokens_left(5)
    assert not constraint.allowed_tokens()[opener]
    # the shortest call of weather is 30 tokens in this vocabulary: 34 leave the model 4 of its own
    for seed in range(3):
        best = respond(lm, registry_of(weather), "hermes", "weather", strategy="sample", seed=seed,
                       max_new_tokens=34).best
        assert best.tool_calls and best.tool_calls[0].error is None


# -- fork and rollback ------------------------------------------------------------------------------------
def test_rollback_crosses_an_island_and_fork_is_independent(lms: dict) -> None:
    lm = lms["hermes"]
    constraint = make_native_constraint(lm, registry_of(echo), "hermes")
    ids = lm.tokenizer.encode("Ok. " + call_text("hermes", "echo", '{"text": "a"}'), add_special_tokens=False)
    for t in ids[:-1]:
        constraint.accept(t)
    before = constraint.text
    branch = constraint.fork()
    step = constraint.accept(ids[-1])
    assert step.forced_token_ids and constraint.tool_calls and branch.tool_calls == [] and branch.text == before
    feed(constraint, lm, "Done")
    constraint.rollback(len(lm.tokenizer.encode("Done", add_special_tokens=False)) + len(step.forced_token_ids))
    assert constraint.text == before and constraint.tool_calls == []  # the island went with its closing token
    again = constraint.accept(ids[-1])
    assert again.forced_token_ids == step.forced_token_ids
    with pytest.raises(GrammarError, match="cannot roll back"):
        constraint.rollback(10_000)
    assert torch.equal(branch.allowed_tokens(), branch.fork().allowed_tokens())


def test_inside_a_call_the_response_cannot_end(lms: dict) -> None:
    lm = lms["hermes"]
    constraint = make_native_constraint(lm, registry_of(echo), "hermes")
    eos = lm.tokenizer.eos_token_id
    feed(constraint, lm, "Hi ")
    assert constraint.allowed_tokens()[eos]
    feed(constraint, lm, '<tool_call>\n{"name": "echo", "arguments": {"text": "a')
    assert constraint.in_call and not constraint.allowed_tokens()[eos]


def test_an_opener_that_is_plain_text_is_found_lazily(lms: dict) -> None:
    """A Hermes fine-tune whose tokenizer spells `<tool_call>` in pieces: free text runs until the
    opener's text appears, then the call is constrained; text-only responses cannot spell it."""
    base = lms["hermes"]
    tok = build_tokenizer("hermes")
    plain = build_tokenizer("llama3")  # no <tool_call> tokens, but give it the Qwen template
    plain.chat_template = tok.chat_template
    lm = dataclasses.replace(base, tokenizer=plain, model=build_lm("llama3").model)
    assert "<tool_call>" not in plain.get_added_vocab()
    constraint = make_native_constraint(lm, registry_of(echo), "hermes")
    steps = feed(constraint, lm, "Sure. " + call_text("hermes", "echo", '{"text": "b"}'))
    assert steps[-1].tool_call.result == "echo: b" and constraint.text.startswith("Sure. <tool_call>\n")
    words_only = make_native_constraint(lm, registry_of(echo), "hermes", tool_choice="none")
    with pytest.raises(GrammarError, match="does not fit"):
        feed(words_only, lm, "Sure. <tool_call>")


def test_a_search_runs_the_chosen_branchs_side_effect_call_then_goes_on(lms: dict) -> None:
    lm = lms["llama3"]
    asked = []
    result = respond(lm, registry_of(remember), "llama3", "remember", strategy="beam", max_new_tokens=40,
                     budget=200, defer_side_effects=True, confirm=lambda record: asked.append(record.tool) or True)
    best = result.best
    (record,) = best.tool_calls
    assert asked == ["remember"] and record.result == "remembered" and not record.speculative
    island = native_format(lm.tokenizer, "llama3").island_ids("remembered", None, 1000)
    start = best.island_mask.index(True)
    assert best.token_ids[start:start + len(island)] == island and len(best.token_ids) > start + len(island)
