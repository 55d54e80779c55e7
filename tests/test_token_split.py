"""Text the grammar forces is written in the tokenizer's own tokens (agent.grammar.token_split).

A sampler may pick any token the grammar allows, so it can spell forced text in a split the model
never saw in training: after `"expr":` in a JSON call the separator and the string's quote are
forced, and the tokenizer writes them as one token ' "', but a bare " " is allowed too. SmolLM2
took the bare space (its favourite, ' {"', was refused) and then opened the string with `}}`. The
model here is the tiny random Llama with a strong liking for " " added to its logits: it must still
write ' "' there, and the rest of the forced text in the tokenizer's own split.
"""

from __future__ import annotations

import json

import pytest

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.grammar.constraint import make_constraint
from agent.model.runtime import LoadedModel
from tiny_model import favouring_lm

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}, "timeout": {"type": "integer"}},
          "required": ["text", "timeout"], "additionalProperties": False,
          "x-guidance": {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}}
GRAMMAR = f"start: %json {json.dumps(SCHEMA)}\n"


@pytest.fixture(scope="module")
def space_lm(tiny_model_dir) -> LoadedModel:
    return favouring_lm(tiny_model_dir, " ", 8.0, "likes-a-space")


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
def test_forced_json_separators_come_out_in_the_tokenizers_own_split(space_lm: LoadedModel, strategy: str) -> None:
    tok = space_lm.tokenizer
    assert [tok.decode([t]) for t in tok.encode('": "')] == ['":', ' "']  # the split the model was trained on
    prompt = tok.encode("<|user|>\nWhat is it?\n<|assistant|>\n")
    for seed in range(10 if strategy == "sample" else 1):
        # 120 tokens: far from the last 40, where the finishing steer picks the closing tokens itself
        config = DecodeConfig(strategy=strategy, temperature=1.0, seed=seed, max_new_tokens=120)
        result = decode(space_lm, prompt, config, constraint=make_constraint(space_lm, None, GRAMMAR))
        value = json.loads(result.text)  # still a whole JSON object
        assert set(value) == {"text", "timeout"}
        pieces = [tok.decode([t]) for t in result.token_ids]
        # the key, its separator and the string's quote: '{"' 't' 'ex' 't' '":' ' "', never '":' ' ' '"'
        after_key = pieces.index('":') + 1
        assert pieces[after_key] == ' "', pieces
        assert pieces[: after_key] == [tok.decode([t]) for t in tok.encode('{"text":')], pieces
