"""GrammarConstraint end to end through the decode loop on the tiny random model.

Acceptance (issue 3): 200 responses sampled at temperature 1.5 under the tool grammar all parse
with lark and every call names a registered tool with well-typed arguments; 100 responses under
grammars/json.lark all pass json.loads.

A random model almost never spells `SEARCH(` by chance, so `Steer` sometimes narrows the real
mask to the tokens that spell a call opening. Every token still comes from the constraint's own
mask; what follows the opening (arguments, closing, island) is up to the sampler and the grammar.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.grammar.checking import check_grammar, parse_with_user_grammar
from agent.grammar.constraint import GrammarConstraint, make_constraint
from agent.grammar.protocol import parse_response
from agent.model.runtime import LoadedModel, cache_keyword_of
from agent.tooling.registry import default_registry
from agent.tooling.runner import check_args
from constraint_script import Script
from tiny_model import train_tokenizer

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def token_bytes(lm) -> list[bytes]:
    return [lm.tokenizer.convert_tokens_to_string([t]).encode() if t else b""
            for t in lm.tokenizer.convert_ids_to_tokens(list(range(len(lm.tokenizer))))]


class Steer:
    """Narrows the constraint's mask, now and then, to the tokens that spell a call opening."""

    def __init__(self, inner: GrammarConstraint, seed: int, rate: float = 0.2) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.rate = rate
        self.todo = b""
        self.pieces = inner.token_bytes

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def allowed_tokens(self) -> torch.Tensor:
        mask = self.inner.allowed_tokens()
        if not self.todo and not self.inner.in_call and self.rng.random() < self.rate:
            self.todo = self.rng.choice([b"SEARCH(", b"LOAD(", b"CALL("])
        if self.todo:
            fits = torch.tensor([bool(p) and self.todo.startswith(p) for p in self.pieces]
                                + [False] * (mask.numel() - len(self.pieces)))
            narrowed = mask & fits
            if narrowed.any():
                return narrowed
            self.todo = b""
        return mask

    def accept(self, token_id: int):
        piece = self.pieces[token_id]
        self.todo = self.todo[len(piece):] if self.todo.startswith(piece) else b""
        return self.inner.accept(token_id)


@pytest.fixture(scope="module")
def prompt(tiny_lm) -> list[int]:
    return tiny_lm.tokenizer.encode("<|user|>\nWhat is the capital of France?\n<|assistant|>\n")


@pytest.fixture()
def kb_home(agent_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    seed = tmp_path / "docs.jsonl"
    seed.write_text(json.dumps({"id": 3, "title": "France", "text": "The capital of France is Paris."}) + "\n")
    from agent.tools import kb

    monkeypatch.setattr(kb, "shipped_docs_path", lambda: seed)
    monkeypatch.setenv("AGENT_KB", str(tmp_path / "kb.sqlite"))
    return agent_home


def test_200_hot_samples_all_parse_with_well_typed_calls(tiny_lm, prompt, kb_home) -> None:
    registry = default_registry()
    calls = islands = 0
    for seed in range(200):
        constraint = make_constraint(tiny_lm, registry)
        config = DecodeConfig(strategy="sample", temperature=1.5, seed=seed, max_new_tokens=48)
        result = decode(tiny_lm, prompt, config, constraint=Steer(constraint, seed))
        segments = parse_response(result.text, constraint.grammar)  # raises if it does not parse
        assert "".join(s.text for s in segments) == result.text
        for seg in segments:
            if seg.kind == "call":
                calls += 1
                check_args(registry.get(seg.tool), seg.args)  # registered and well-typed
            elif seg.kind == "island":
                islands += 1
        assert len(result.tool_calls) == sum(1 for s in segments if s.kind == "call")
        # islands are exactly the forced tokens, and they are not scored
        forced = [t for t, isl in zip(result.token_ids, result.island_mask) if isl]
        assert tiny_lm.tokenizer.decode(forced) == "".join(s.text for s in segments if s.kind == "island")
        assert all(lp == 0.0 for lp, isl in zip(result.logprobs, result.island_mask) if isl)
    assert calls >= 100 and islands == calls  # the test did exercise calls


def test_every_sampled_token_was_allowed_and_eos_only_when_complete(tiny_lm, prompt) -> None:
    constraint = make_constraint(tiny_lm, default_registry())
    eos = next(iter(tiny_lm.eos_token_ids))
    mask = constraint.allowed_tokens()
    assert mask.dtype == torch.bool and mask.numel() == tiny_lm.vocab_size
    assert bool(mask[eos])  # an empty response is complete
    script = Script(constraint, 'Sure: CALL(calc, expr="6')
    for _ in range(40):
        allowed = script.allowed_tokens()
        if not script.todo:
            break
        token = int(torch.nonzero(allowed)[0])
        script.accept(token)
    assert not bool(constraint.allowed_tokens()[eos])  # inside a call: no end of response


def test_a_call_runs_and_its_result_is_forced_as_an_island(tiny_lm, prompt, kb_home) -> None:
    constraint = make_constraint(tiny_lm, default_registry())
    config = DecodeConfig(strategy="greedy", max_new_tokens=60)
    result = decode(tiny_lm, prompt, config, constraint=Script(constraint, 'Let me see. CALL(calc, expr="6 * 7")'))
    assert result.text.startswith('Let me see. CALL(calc, expr="6 * 7")\n=> 42\n')
    [record] = result.tool_calls[:1]
    assert (record.tool, record.args, record.result, record.error) == ("calc", {"expr": "6 * 7"}, "42", None)
    assert record.call_text == 'CALL(calc, expr="6 * 7")'
    island_ids = [t for t, isl in zip(result.token_ids, result.island_mask) if isl]
    assert tiny_lm.tokenizer.decode(island_ids).startswith("\n=> 42\n")
    parse_response(result.text, constraint.grammar)
    # the search tool reads the knowledge base
    constraint = make_constraint(tiny_lm, default_registry())
    result = decode(tiny_lm, prompt, config, constraint=Script(constraint, 'SEARCH("capital of France")'))
    assert result.text.startswith('SEARCH("capital of France")\n=> [3] France: The capital of France is Paris.\n')


def test_several_calls_in_one_response(tiny_lm, prompt, kb_home) -> None:
    constraint = make_constraint(tiny_lm, default_registry())
    # the script is the model's part only: each island is forced by the constraint in between
    script = Script(constraint, 'LOAD(3) and CALL(calc, expr="1+1") ok')
    result = decode(tiny_lm, prompt, DecodeConfig(max_new_tokens=80), constraint=script)
    assert result.text.startswith('LOAD(3)\n=> France: The capital of France is Paris.\n'
                                  ' and CALL(calc, expr="1+1")\n=> 2\n ok')
    assert [c.tool for c in result.tool_calls][:2] == ["load", "calc"]
    kinds = [s.kind for s in parse_response(result.text, constraint.grammar)]
    assert kinds[:5] == ["call", "island", "text", "call", "island"]


def test_no_call_opens_after_the_response_used_its_calls(tiny_lm, prompt, kb_home) -> None:
    """max_calls=2: after the second island no token with `(` is allowed, so no third call can
    open; the text goes on. Without a limit the same state allows calls."""
    script = 'CALL(calc, expr="1+1") and CALL(calc, expr="2+2") ok'
    pieces = token_bytes(tiny_lm)
    for max_calls, opens in ((2, False), (0, True)):
        constraint = make_constraint(tiny_lm, default_registry(), max_calls=max_calls)
        result = decode(tiny_lm, prompt, DecodeConfig(max_new_tokens=60), constraint=Script(constraint, script))
        assert result.text.startswith('CALL(calc, expr="1+1")\n=> 2\n and CALL(calc, expr="2+2")\n=> 4\n ok')
        after = make_constraint(tiny_lm, default_registry(), max_calls=max_calls)
        steps = Script(after, script)
        while steps.todo:
            allowed = steps.allowed_tokens()
            steps.accept(int(torch.nonzero(allowed).flatten()[0]))
        allowed = after.allowed_tokens()
        with_paren = [t for t, piece in enumerate(pieces) if b"(" in piece and t < allowed.numel()]
        assert bool(allowed[with_paren].any()) is opens
        assert bool(allowed.any())  # the answer can go on in words


def test_fork_gives_independent_branches(tiny_lm) -> None:
    base = make_constraint(tiny_lm, default_registry())
    pieces = base.token_bytes
    ids = [i for i, p in enumerate(pieces) if p == b"C"] + [i for i, p in enumerate(pieces) if p == b"x"]
    c_id, x_id = ids[0], ids[1]
    base.accept(c_id)
    left, right = base.fork(), base.fork()
    left.accept(x_id)
    assert left.text == "Cx" and right.text == "C" and base.text == "C"
    assert torch.equal(right.allowed_tokens(), base.allowed_tokens())


def test_rollback_returns_to_an_earlier_state(tiny_lm, kb_home) -> None:
    constraint = make_constraint(tiny_lm, default_registry())
    before = constraint.allowed_tokens()
    script = Script(constraint, 'CALL(calc, expr="2")')
    consumed = 0
    while script.todo:
        allowed = script.allowed_tokens()
        step = script.accept(int(torch.nonzero(allowed)[0]))
        consumed += 1 + len(step.forced_token_ids)
    assert constraint.text == 'CALL(calc, expr="2")\n=> 2\n' and len(constraint.tool_calls) == 1
    constraint.rollback(consumed)
    assert constraint.text == "" and constraint.tool_calls == []
    assert torch.equal(constraint.allowed_tokens(), before)


def test_tight_token_budget_still_parses(tiny_lm, prompt, kb_home) -> None:
    """A call opened near the limit is closed in time; no call opens when it could not finish."""
    registry = default_registry()
    for seed in range(30):
        constraint = make_constraint(tiny_lm, registry)
        config = DecodeConfig(strategy="sample", temperature=1.5, seed=seed, max_new_tokens=40 + seed % 7)
        result = decode(tiny_lm, prompt, config, constraint=Steer(constraint, seed, rate=0.5))
        parse_response(result.text, constraint.grammar)


def test_100_json_samples_pass_json_loads(tiny_lm, prompt) -> None:
    grammar = (GRAMMARS / "json.lark").read_text()
    kinds = set()
    for seed in range(100):
        constraint = make_constraint(tiny_lm, None, grammar)
        config = DecodeConfig(strategy="sample", temperature=1.5, seed=seed, max_new_tokens=32)
        result = decode(tiny_lm, prompt, config, constraint=constraint)
        value = json.loads(result.text)
        parse_with_user_grammar(grammar, result.text)
        assert isinstance(value, dict)  # JSON mode: an object at the top
        kinds.update(type(v).__name__ for v in value.values())
    assert len(kinds) >= 3  # its values: objects, arrays, strings, numbers... not one degenerate kind


def test_user_grammar_turns_tools_off(tiny_lm, prompt) -> None:
    grammar = (GRAMMARS / "yes_no.lark").read_text()
    for seed in range(10):
        constraint = make_constraint(tiny_lm, default_registry(), grammar)
        result = decode(tiny_lm, prompt, DecodeConfig(strategy="sample", temperature=1.5, seed=seed,
                                                      max_new_tokens=30), constraint=constraint)
        assert result.text.split(",")[0] in ("yes", "no")
        parse_with_user_grammar(grammar, result.text)
        assert result.tool_calls == []


def test_invalid_grammars_are_reported_with_line_and_column(tiny_lm) -> None:
    issues = check_grammar('start: "a" item\n\nitem: "b" | missing\n')
    assert len(issues) == 1
    assert issues[0].line == 3 and issues[0].column >= 1
    assert "missing" in issues[0].message
    assert str(issues[0]).startswith(f"3:{issues[0].column}: error: ")
    assert check_grammar("") and check_grammar("")[0].message == "the grammar is empty"
    assert check_grammar((GRAMMARS / "json.lark").read_text(), lark_compat=True) == []
    warnings = check_grammar('start: "a" %json {"type": "integer"}\n', lark_compat=True)
    assert warnings and all(w.severity == "warning" for w in warnings)
    with pytest.raises(ValueError, match="not valid"):
        make_constraint(tiny_lm, None, "start: (\n")


def test_cached_free_text_masks_equal_the_engines_own(tiny_lm) -> None:
    """Free-text masks are reused across states with the same key: they must be exactly llguidance's."""
    import numpy as np

    registry = default_registry()
    rng = random.Random(7)
    checked = 0
    for seed in range(20):
        constraint = make_constraint(tiny_lm, registry)
        steer = Steer(constraint, seed, rate=0.1)
        for _ in range(80):
            if constraint.is_finished():
                break
            allowed = steer.allowed_tokens()
            if not constraint.in_call and steer.todo == b"":
                fresh = constraint.fresh_free_text_mask()
                assert np.array_equal(constraint.free_text_mask(), fresh), constraint.text[-20:]
                checked += 1
            choices = [t for t in torch.nonzero(allowed).flatten().tolist() if t not in tiny_lm.eos_token_ids]
            steer.accept(rng.choice(choices))
    assert checked > 200


def feed(constraint: GrammarConstraint, text: str) -> None:
    """Accept `text` one byte-token at a time (a call's island is forced by the constraint itself)."""
    pieces = constraint.token_bytes
    for byte in text.encode():
        constraint.accept(pieces.index(bytes([byte])))


# Places where free text is at a line start: the response's start, after a newline, after an island.
LINE_STARTS = ["", "Hello.\n", 'SEARCH("capital of France")', 'Hi\nCALL(calc, expr="1")', 'LOAD(3)\n=>x\n']


@pytest.mark.parametrize("before", LINE_STARTS)
def test_no_token_lets_free_text_start_a_line_with_the_island_arrow(tiny_lm, kb_home, before: str) -> None:
    """A line `=> ...` is always a tool's result: at a line start no allowed token completes `=> `
    from what is already written, while `=>` followed by anything else stays allowed."""
    pieces = token_bytes(tiny_lm)
    for typed, rest in (("", b"=> "), ("=", b"> "), ("=>", b" ")):
        constraint = make_constraint(tiny_lm, default_registry())
        feed(constraint, before + typed)
        assert not constraint.in_call
        allowed = constraint.allowed_tokens()
        completing = [pieces[t] for t in range(len(pieces)) if allowed[t] and pieces[t].startswith(rest)]
        assert completing == [], (before + typed, completing)
        assert bool(allowed[pieces.index(b"x")])  # `=>x` is ordinary text
    mid_line = make_constraint(tiny_lm, default_registry())
    feed(mid_line, before + "so =>")
    assert bool(mid_line.allowed_tokens()[pieces.index(b" ")])  # not at a line start: `=> ` is text


def test_cached_free_text_masks_stay_exact_at_line_starts(tiny_lm, kb_home) -> None:
    """The mask cache's key tells a line start (and `=`, `=>` after it) from the same bytes mid-line:
    each state's cached mask is the one the engine computes there, whichever state came first."""
    import numpy as np

    texts = ["abc", "abc\n", "abc\n=", "abc\n=>", "abc\n=>x", "abc=", "abc=>", "=", "=>", "\n=", "x\n\n=>",
             "x\n=>\n", 'SEARCH("capital of France")', 'SEARCH("capital of France")=',
             'SEARCH("capital of France")=>', 'SEARCH("capital of France")x\n=>', "SEAR", "x\nSEAR", "é\n=>"]
    for text in texts + texts[::-1]:
        constraint = make_constraint(tiny_lm, default_registry())
        feed(constraint, text)
        assert np.array_equal(constraint.free_text_mask(), constraint.fresh_free_text_mask()), text



def test_a_call_opened_with_tokens_to_spare_keeps_its_choices(kb_home) -> None:
    """With 34 tokens left, enough to finish a call, the tokens after a parameter's name are what the
    grammar allows, not one token picked to close in a hurry. The closing estimate once gave up where
    the forced text `="` could be spelt by tokens that run on into the value, and the steer then forced
    the longest allowed one: SmolLM2 wrote `expr="<1234 * 5678>"` whenever --max-new-tokens was <= 40.
    The tokenizer here has such tokens, as SmolLM2's has (`="<`, `="1`)."""
    tok = train_tokenizer()
    tok.add_tokens(['="<', '="1'])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config).eval()
    lm = LoadedModel(model=model, tokenizer=tok, model_id="tiny-run-on-quote", device=torch.device("cpu"),
                     dtype=torch.float32, weights_hash="run-on-quote", cache_keyword=cache_keyword_of(model))
    steered = make_constraint(lm, default_registry(), tool_choice="calc")
    free = make_constraint(lm, default_registry(), tool_choice="calc")
    for token in tok.encode("CALL(calc, expr", add_special_tokens=False):
        steered.accept(token)
        free.accept(token)
    choices = free.allowed_tokens()
    assert choices.sum() > 1  # several ways on (else the test shows nothing)
    steered.set_tokens_left(34)
    assert torch.equal(steered.allowed_tokens(), choices)
