"""Our decode loop against transformers' generate, seeds, stops, and prefix reuse across turns."""

from __future__ import annotations

import torch

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.decoding.kv_cache import PrefixCache
from agent.model.chat_format import prompt_token_ids


def prompt(lm, text: str = "hello there") -> list[int]:
    return prompt_token_ids(lm.tokenizer, [{"role": "user", "content": text}])


def test_greedy_equals_generate_token_for_token(tiny_lm) -> None:
    for text in ("hello there", "What is 12 * 7?", 'SEARCH("x")'):
        ids = prompt(tiny_lm, text)
        ours = decode(tiny_lm, ids, DecodeConfig(max_new_tokens=40))
        with torch.inference_mode():
            theirs = tiny_lm.model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False,
                                            eos_token_id=None, pad_token_id=tiny_lm.tokenizer.pad_token_id)
        assert ours.token_ids == theirs[0, len(ids):].tolist()
        assert ours.new_tokens == 40 and ours.finish_reason == "length"


def test_sampling_is_reproducible_by_seed(tiny_lm) -> None:
    ids = prompt(tiny_lm)
    config = DecodeConfig(strategy="sample", temperature=1.3, top_k=50, top_p=0.95, seed=11, max_new_tokens=30)
    first = decode(tiny_lm, ids, config)
    again = decode(tiny_lm, ids, config)
    other = decode(tiny_lm, ids, config.replace(seed=12))
    assert first.token_ids == again.token_ids
    assert first.token_ids != other.token_ids


def test_streamed_pieces_make_the_text(tiny_lm) -> None:
    pieces: list[str] = []
    out = decode(tiny_lm, prompt(tiny_lm), DecodeConfig(strategy="sample", seed=3, max_new_tokens=25),
                 on_token=pieces.append)
    assert "".join(pieces) == out.text
    assert len(pieces) > 1


def test_stops_on_eos_and_stop_strings(tiny_lm, monkeypatch) -> None:
    ids = prompt(tiny_lm)
    free = decode(tiny_lm, ids, DecodeConfig(strategy="sample", seed=5, max_new_tokens=30))
    # a stop string taken from the middle of the free run ends generation there
    stop = free.text[5:8]
    assert stop.strip()
    stopped = decode(tiny_lm, ids, DecodeConfig(strategy="sample", seed=5, max_new_tokens=30, stop=[stop]))
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text and free.text.startswith(stopped.text)
    # when the model's next token is an end-of-sequence token, the response ends there
    third = free.token_ids[2]
    monkeypatch.setattr(type(tiny_lm), "eos_token_ids", property(lambda self: {third}))
    ended = decode(tiny_lm, ids, DecodeConfig(strategy="sample", seed=5, max_new_tokens=30))
    assert ended.finish_reason == "eos" and ended.token_ids == free.token_ids[:2]


def test_prefix_of_earlier_turn_is_reused_not_recomputed(tiny_lm) -> None:
    cache = PrefixCache()
    config = DecodeConfig(strategy="sample", seed=1, max_new_tokens=12)
    first_prompt = prompt(tiny_lm)
    first = decode(tiny_lm, first_prompt, config, prefix_cache=cache)
    second_prompt = first_prompt + first.token_ids + prompt(tiny_lm, "and more")
    reused = decode(tiny_lm, second_prompt, config, prefix_cache=cache)
    fresh = decode(tiny_lm, second_prompt, config)
    assert reused.reused_prompt_tokens == len(first_prompt) + len(first.token_ids)
    assert fresh.reused_prompt_tokens == 0
    assert reused.token_ids == fresh.token_ids
    assert all(abs(a - b) < 1e-4 for a, b in zip(reused.logprobs, fresh.logprobs, strict=False))


def test_should_stop_interrupts(tiny_lm) -> None:
    calls = {"n": 0}

    def stop_after_five() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    out = decode(tiny_lm, prompt(tiny_lm), DecodeConfig(max_new_tokens=50), should_stop=stop_after_five)
    assert out.finish_reason == "interrupted" and out.new_tokens == 5
