"""Build a small random-weight Llama and a BPE tokenizer trained on the spot (tests and benchmarks).

Nothing is downloaded: the tokenizer learns from text written here, the weights are random but seeded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from agent.model.runtime import LoadedModel, load_model

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}<|end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]

_TRAINING_TEXT = [
    'SEARCH("capital of France")\n=> [3] France: The capital of France is Paris.\nThe capital is Paris.',
    'CALL(calc, expr="12 * 7")\n=> 84\nThe answer is 84.',
    'LOAD(12)\n=> Python: Python is a programming language.',
    "hello there, how are you today? I am fine, thank you. What is the weather like?",
    '{"name": "agent", "tools": [1, 2, 3], "ok": true, "none": null, "pi": 3.14}',
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 + - * / ( ) = ,",
    "yes no maybe error: timeout result search load call note calc query expr text id",
]


# Printable ASCII with space, newline and tab as ByteLevel writes them (the bytes below 33 are shifted to 256+).
ASCII_BYTE_LEVEL = [chr(b) for b in range(33, 127)] + ["\u0120", "\u010a", "\u0109"]


def train_tokenizer(vocab_size: int = 600, all_bytes: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the chat special tokens, as a transformers fast tokenizer.

    all_bytes=False: only printable ASCII, space, newline and tab, no token for a lone byte of a
    longer UTF-8 character (a server names such tokens by an empty text, like end-of-sequence).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if all_bytes else ASCII_BYTE_LEVEL,
        show_progress=False,
    )
    tok.train_from_iterator(_TRAINING_TEXT * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(out_dir: Path, seed: int = 0, hidden: int = 64, layers: int = 2,
                     vocab_size: int = 600, chat_template: bool = True, all_bytes: bool = True,
                     init_std: float = 0.02) -> Path:
    """Write a tiny random Llama (save_pretrained, tokenizer included) to out_dir and return it. At the usual
    `init_std` its next-token distribution is nearly flat whatever the context; a larger one (0.3) makes what
    it predicts depend on what came before, for tests that must tell contexts apart."""
    tokenizer = train_tokenizer(vocab_size, all_bytes)
    if not chat_template:
        tokenizer.chat_template = None
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, tie_word_embeddings=True,
        initializer_range=init_std,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


class FavouringLlama(LlamaForCausalLM):
    """A Llama whose every next-token distribution favours one token by `boost` nats."""

    favourite = -1
    boost = 0.0

    def forward(self, *args, **kwargs):  # type: ignore[override]
        out = super().forward(*args, **kwargs)
        out.logits[..., self.favourite] += self.boost
        return out


def favouring_lm(model_dir: Path, piece: str, boost: float, name: str) -> LoadedModel:
    """The tiny Llama in `model_dir` with a liking (`boost` nats) for the one token that spells `piece`."""
    base = load_model(str(model_dir), device="cpu")
    model = FavouringLlama.from_pretrained(str(model_dir)).eval()
    (model.favourite,) = base.tokenizer.encode(piece)
    model.boost = boost
    return LoadedModel(model=model, tokenizer=base.tokenizer, model_id=f"tiny-{name}", device=base.device,
                       dtype=base.dtype, weights_hash=name, cache_keyword=base.cache_keyword)
