"""The corpus's other ways of asking (training/variations.py) and the fine-tune from saved weights."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from agent.tooling.spec import ToolFailure
from agent.tools.calc import calc
from training.corpus import generate
from training.train import main
from training.variations import careless, number_words, words_for_numbers


@pytest.mark.parametrize(("n", "words"), [
    (0, "zero"), (13, "thirteen"), (40, "forty"), (58, "fifty-eight"), (105, "one hundred and five"),
    (900, "nine hundred"), (3000, "three thousand"), (3005, "three thousand and five"),
    (48213, "forty-eight thousand two hundred and thirteen"),
])
def test_numbers_are_written_as_people_say_them(n: int, words: str) -> None:
    assert number_words(n) == words


def test_only_numbers_people_spell_out_are_written_in_words() -> None:
    assert words_for_numbers("add 900 to 3000") == "add nine hundred to three thousand"
    assert words_for_numbers("What is 2.5 * 4?") is None
    assert words_for_numbers("What is 250000 + 4?") is None
    with pytest.raises(ValueError, match="0..999999"):
        number_words(1_000_000)


def test_a_hurried_question_keeps_the_name_it_asks_about() -> None:
    rng = random.Random(0)
    for _ in range(200):
        text = careless("Which currency does Grauthemia Pelork use?", "Grauthemia Pelork", rng)
        assert "grauthemia pelork" in text
        assert text == text.lower() and not text.endswith("?")


def _calls(n: int) -> list[tuple[str, str, str]]:
    """(user message, calc expression, the answer's text) of every arithmetic exchange in n training dialogues."""
    return [(ex.user, ex.meta["expr"], ex.segments[-1][0]) for dialogue in generate(n, seed=5)
            for ex in dialogue.exchanges if ex.meta.get("kind") == "calc"]


def _computed(expr: str) -> str:
    try:
        return f"The answer is {calc(expr)}."
    except ToolFailure:
        return "I can't compute that"


def test_the_corpus_asks_arithmetic_in_words_and_stories_and_every_call_computes() -> None:
    calls = _calls(1200)
    users = [user for user, _, _ in calls]
    assert any(re.search(r"\bmultiply \d+ by \d+", u) for u in users)
    assert any("How many" in u and not u.startswith("How many") for u in users)  # a story, then the question
    spelled = [(u, e) for u, e, _ in calls if re.search(r"\b(hundred|thousand)\b", u) and not re.search(r"\d", u)]
    assert spelled, "no question with its numbers in words"
    for user, expr in spelled:  # the call has the numbers the words say
        assert all(number_words(int(n)) in user for n in re.findall(r"\d+", expr))
    for user, expr, answer in calls:
        if re.search(r"\bsubtract \d", user):  # subtract A from B is B - A
            a, b = re.findall(r"\d+(?:\.\d+)?", user)[:2]
            assert expr == f"{b} - {a}"
        assert answer.startswith(_computed(expr)), (user, expr, answer)  # what it learns to say is right


def test_the_corpus_searches_names_as_the_user_typed_them_and_inside_sentences() -> None:
    searches = [(ex.user, ex.segments[0][0][len('SEARCH("'):-len('")')]) for d in generate(1200, seed=5)
                for ex in d.exchanges if ex.meta.get("kind") in ("fact", "about", "unknown")]
    for user, name in searches:
        assert name in user  # the searched name is copied from the question, as written
    assert any(user == user.lower() and name == name.lower() and name[:1].isalpha() for user, name in searches)
    # a name that is not the first word, with the question after it saying "its" or "it"
    assert any(re.search(r"[.:] (and its|what about its|when was it|how many people)", user, re.I)
               for user, _ in searches)


def test_a_fine_tune_starts_from_saved_weights_and_keeps_their_tokenizer(tmp_path: Path) -> None:
    tiny = ["--dialogues", "200", "--warmup", "1", "--hidden-size", "32", "--intermediate-size", "64",
            "--layers", "1", "--heads", "2", "--batch-size", "4", "--workers", "1", "--device", "cpu"]
    main(tiny + ["--seed", "0", "--steps", "2", "--out", str(tmp_path / "first")])
    main(tiny + ["--seed", "1", "--steps", "2", "--init", str(tmp_path / "first"), "--out", str(tmp_path / "tuned")])
    first, tuned = (json.loads((tmp_path / d / "training.json").read_text()) for d in ("first", "tuned"))
    assert (tmp_path / "tuned" / "tokenizer.json").read_text() == (tmp_path / "first" / "tokenizer.json").read_text()
    assert tuned["started_from"]["training"]["weights_sha256"] == first["weights_sha256"]
    assert tuned["weights_sha256"] != first["weights_sha256"]
    config = json.loads((tmp_path / "tuned" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # what transformers 4.56 can load too
    assert config["additional_special_tokens"] == ["<|system|>", "<|user|>", "<|assistant|>"]
    card = (tmp_path / "tuned" / "MODEL_CARD.md").read_text()
    assert "2 stages" in card and "--init STAGE1 --out agent/demo_model/weights --seed 1" in card


def test_a_fine_tune_from_a_directory_without_a_model_is_refused(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--init", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "no saved model there" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")  # weights without the tokenizer they were trained with
    with pytest.raises(SystemExit) as exit_info:
        main(["--init", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "(tokenizer.json missing)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
