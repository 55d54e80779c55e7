"""The shipped demo model: loads offline, calls the right tools, answers from the islands; the corpus is seeded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent.config import DecodeConfig
from agent.demo_model import demo_kb_docs_path, demo_model_dir
from agent.grammar.islands import format_island
from agent.model.runtime import LoadedModel, load_model
from agent.tooling.registry import default_registry
from agent.turn import ChatSession, TurnResult
from tiny_model import favouring_lm
from training import corpus
from training.corpus import generate
from training.dialogue import Dialogue
from training.encoding import ISLAND, OWN, encode_dialogue
from training.evaluate import LOAD_EVAL
from training.kb_docs import build_kb
from training.phrasings import (
    ABOUT_EVAL,
    ABOUT_TRAIN,
    CALC_EVAL,
    CALC_TRAIN,
    CHAT,
    CHAT_EVAL,
    FACT_EVAL,
    FACT_TRAIN,
    LOAD_TRAIN,
    WRAP_TRAIN,
)
from training.train import main
from training.variations import EMBED_TRAIN, VERB_FRAMES_TRAIN, VERB_OPS_TRAIN, WORD_PROBLEMS_TRAIN


@pytest.fixture(scope="module")
def demo_lm() -> LoadedModel:
    return load_model(str(demo_model_dir()), device="cpu")


def ask(lm: LoadedModel, text: str, agent_home: Path, **config: Any) -> TurnResult:
    options = {"strategy": "greedy", "max_new_tokens": 128, **config}
    session = ChatSession(lm, default_registry(), DecodeConfig(**options), confirm=lambda record: False)
    return session.ask(text)


def answer_after_island(response: str) -> str:
    return response.rsplit("\n=> ", 1)[-1].split("\n", 1)[-1]


def test_weights_are_committed_small_and_load_offline(demo_lm: LoadedModel) -> None:
    weights = demo_model_dir() / "model.safetensors"
    assert weights.is_file()
    assert weights.stat().st_size <= 25_000_000  # the issue: at most 25 MB
    card = (demo_model_dir() / "MODEL_CARD.md").read_text()
    assert "Evaluation" in card and "Limits" in card
    assert demo_lm.tokenizer.eos_token == "<|end|>"
    assert demo_lm.tokenizer.eos_token_id in demo_lm.eos_token_ids
    prompt = demo_lm.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                   add_generation_prompt=True)
    assert prompt == "<|user|>\nhi<|end|>\n<|assistant|>\n"


def test_arithmetic_calls_calc_and_copies_the_number(demo_lm: LoadedModel, agent_home: Path) -> None:
    result = ask(demo_lm, "What is 1234 * 5678?", agent_home)
    assert [c.tool for c in result.tool_calls] == ["calc"]
    assert result.tool_calls[0].result == "7006652"
    assert "=> 7006652\n" in result.response
    assert "7006652" in answer_after_island(result.response)


def test_knowledge_base_questions_call_search_and_mostly_state_the_fact(demo_lm: LoadedModel,
                                                                        agent_home: Path) -> None:
    """Two entities per kind of question (entities seen in training, the first training phrasing
    of each relation): every question calls SEARCH. The shipped model finds the right document for
    46 of 46 and states the fact from the island for 45 of 46 (measured 2026-11-22); the bounds
    below guard against a worse model. Held-out entities and phrasings are measured by
    bench/demo_eval.py (MODEL_CARD.md)."""
    kb = build_kb()
    asked = searched = found = stated = 0
    for (kind, relation), templates in FACT_TRAIN.items():
        entities = sorted((e for e in kb.entities if e.kind == kind and not e.held_out), key=lambda e: e.id)[:2]
        for entity in entities:
            result = ask(demo_lm, templates[0].format(n=entity.name), agent_home)
            asked += 1
            searched += bool(result.tool_calls) and result.tool_calls[0].tool == "search"
            found += bool(result.tool_calls) and f"[{entity.id}] {entity.name}:" in (result.tool_calls[0].result or "")
            stated += entity.fact(relation).sentence in answer_after_island(result.response)
    assert asked == 46 and searched == asked
    assert found >= 0.95 * asked and stated >= 0.9 * asked, (found, stated)


def test_unknown_name_finds_nothing_and_says_so(demo_lm: LoadedModel, agent_home: Path) -> None:
    result = ask(demo_lm, "What is the capital of France?", agent_home)
    assert result.tool_calls and result.tool_calls[0].tool == "search"
    assert result.tool_calls[0].result == "no results"
    assert "don't know" in answer_after_island(result.response)


def test_shipped_docs_are_the_generated_knowledge_base() -> None:
    lines = demo_kb_docs_path().read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == build_kb().docs()
    assert 300 <= len(lines) <= 500


def _dump(dialogues: list[Dialogue]) -> list[str]:
    return [d.to_json() for d in dialogues]


def test_corpus_is_seeded_and_islands_follow_the_readme() -> None:
    first = generate(40, seed=7)
    assert _dump(first) == _dump(generate(40, seed=7))
    assert _dump(first) != _dump(generate(40, seed=8))
    held_out = {e.name for e in build_kb().entities if e.held_out}
    islands = 0
    for dialogue in first:
        for ex in dialogue.exchanges:
            assert not any(name in ex.user for name in held_out)
            for i, (text, is_island) in enumerate(ex.segments):
                if not is_island:
                    continue
                islands += 1
                assert re.fullmatch(r"\n=> [^\n]+\n", text), text
                assert ex.segments[i - 1][0].endswith(")") and not ex.segments[i - 1][1]
                call = ex.segments[i - 1][0]
                if call.startswith("SEARCH("):
                    result = text[4:-1]
                    hits = r"\[\d+\] [^:]+: [^|]+( \| \[\d+\] [^:]+: [^|]+){0,2}"
                    assert result == "no results" or re.fullmatch(hits, result)
                if call.startswith("CALL(calc"):
                    assert re.fullmatch(r"-?[0-9.e+-]+|error: .+", text[4:-1])
    assert islands >= 30
    assert format_island("a\nb") == "\n=> a\\nb\n"


def test_training_encoding_matches_the_chat_template(demo_lm: LoadedModel) -> None:
    tok = demo_lm.tokenizer
    for dialogue in generate(10, seed=3):
        ids, mask = encode_dialogue(tok, dialogue, 4096)
        assert ids == tok.encode(tok.apply_chat_template(dialogue.messages(), tokenize=False), add_special_tokens=False)
        # Full weight on the assistant's own text and <|end|>; islands are marked apart; prompts never.
        trained = tok.decode([t for t, m in zip(ids, mask) if m == OWN])
        assert "=>" not in trained and "<|end|>" in trained
        islands = tok.decode([t for t, m in zip(ids, mask) if m == ISLAND])
        assert all(seg in islands for ex in dialogue.exchanges for seg, is_island in ex.segments if is_island)
        assert "<|user|>" not in trained + islands and "<|system|>" not in trained + islands


def test_training_worlds_hide_the_shipped_names_and_include_the_shipped_kb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dialogues cycle through invented worlds (none of the shipped words) and the shipped KB (never
    its held-out entities), so the model must copy names and facts rather than memorise them."""
    monkeypatch.setattr(corpus, "WORLD_DIALOGUES", 5)
    dialogues = generate(corpus.SHIPPED_EVERY * 5, seed=1)
    shipped = build_kb()
    shipped_names = {e.name for e in shipped.entities}
    held_out = {e.name for e in shipped.entities if e.held_out}
    asked = [[ex.meta.get("entity") for ex in d.exchanges if ex.meta.get("kind") in ("fact", "about")]
             for d in dialogues]
    invented = [n for d in asked[: 5 * (corpus.SHIPPED_EVERY - 1)] for n in d if n]
    from_shipped = [n for d in asked[5 * (corpus.SHIPPED_EVERY - 1):] for n in d if n]
    assert invented and not any(n in shipped_names for n in invented)
    assert from_shipped and all(n in shipped_names and n not in held_out for n in from_shipped)
    words = shipped.words()
    assert not any(w.lower() in words for n in invented for w in n.split())


def test_tree_search_stops_early_on_a_confident_answer(demo_lm: LoadedModel, agent_home: Path) -> None:
    """The tree converges (nothing left promises more than its best answer) long before its budget,
    and on an answer the model is sure of it agrees with greedy."""
    greedy = ask(demo_lm, "What is 1234 * 5678?", agent_home)
    tree = ask(demo_lm, "What is 1234 * 5678?", agent_home, strategy="tree", budget=400)
    assert tree.response == greedy.response
    assert tree.forward_passes < 200


def _stem(template: str) -> str:
    return template.lower().rstrip(".?! ")


def test_evaluation_phrasings_never_occur_in_training() -> None:
    """Held-out means held out: no evaluation template is inside a training template, bare or
    wrapped in the greetings and thanks that training puts around questions."""
    bare = (list(CALC_TRAIN) + [t for ts in FACT_TRAIN.values() for t in ts] + list(ABOUT_TRAIN)
            + list(LOAD_TRAIN) + [u for users, _ in CHAT for u in users]
            + [f.format(v=v) for f in VERB_FRAMES_TRAIN for v, _ in VERB_OPS_TRAIN]
            + [story for story, _ in WORD_PROBLEMS_TRAIN] + list(EMBED_TRAIN))
    training = [t.lower() for t in bare] + [w.format(q=t).lower() for w in WRAP_TRAIN for t in bare]
    evaluation = (list(CALC_EVAL) + [t for ts in FACT_EVAL.values() for t in ts] + list(ABOUT_EVAL)
                  + list(LOAD_EVAL) + [u for users, _ in CHAT_EVAL for u in users])
    leaks = [e for e in evaluation if any(_stem(e) in t for t in training)]
    assert not leaks


def test_corpus_does_not_depend_on_the_number_of_workers() -> None:
    one = generate(900, seed=3, workers=1)  # three worlds: 400 + 400 + 100 dialogues
    assert _dump(generate(900, seed=3, workers=2)) == _dump(one)
    assert len(one) == 900


def test_training_script_trains_saves_and_reruns_identically(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The training command end to end on a tiny model: data made by two workers and cached,
    weights saved with a model card; a rerun from the cache gives bit-identical weights."""
    args = ["--seed", "0", "--dialogues", "450", "--steps", "6", "--warmup", "2", "--hidden-size", "32",
            "--intermediate-size", "64", "--layers", "1", "--heads", "2", "--batch-size", "4",
            "--workers", "2", "--data-cache", str(tmp_path / "cache"), "--device", "cpu"]
    main(args + ["--out", str(tmp_path / "a")])
    first = capsys.readouterr().out
    main(args + ["--out", str(tmp_path / "b")])
    second = capsys.readouterr().out
    assert "corpus: 450 dialogues" in first and "data: reused" in second
    runs = [json.loads((tmp_path / run / "training.json").read_text()) for run in ("a", "b")]
    assert runs[0]["steps"] == 6 and runs[0]["weights_sha256"] == runs[1]["weights_sha256"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert "## Training" in (tmp_path / "a" / "MODEL_CARD.md").read_text()
    lm = load_model(str(tmp_path / "a"), device="cpu")
    assert lm.tokenizer.eos_token == "<|end|>" and lm.model.config.hidden_size == 32


def test_tree_search_keeps_the_greedy_answer_when_it_is_best(demo_lm: LoadedModel, agent_home: Path) -> None:
    """Short wrong answers finish first; the tree must not drop the still-open beam that scores
    higher than all of them (before the fix, it answered 0.003924868677 here, miscopied, at -0.25
    nats/token while greedy's correct answer scores about -0.00001)."""
    for prompt, expected in [("Quick question: what is 9183 / 179978 / 13?", "0.003924838677"),
                             ("I want to know 15 * 113501 * 10.", "17025150")]:
        greedy = ask(demo_lm, prompt, agent_home)
        tree = ask(demo_lm, prompt, agent_home, strategy="tree")
        assert tree.candidates[0]["score"] >= greedy.candidates[0]["score"] - 1e-6
        assert (answer_after_island(tree.response) == answer_after_island(greedy.response)
                == f"The answer is {expected}.")


def test_a_response_makes_at_most_max_tool_calls_calls(agent_home: Path) -> None:
    """A model that keeps calling (the demo model with a liking for its `CALL` token added to its
    logits; the demo model alone calls once here): the cap stops it at two calls and the response
    still ends."""
    calling = favouring_lm(demo_model_dir(), "CALL", 15.0, "demo-likes-call")
    prompt = "What does 2 - 672 come to?"
    unlimited = ask(calling, prompt, agent_home, max_tool_calls=0)
    assert len(unlimited.tool_calls) > 2  # the premise: without a cap it keeps calling
    capped = ask(calling, prompt, agent_home, max_tool_calls=2)
    assert len(capped.tool_calls) == 2
    assert capped.response.count("\n=> ") >= 2 and capped.response.strip()
