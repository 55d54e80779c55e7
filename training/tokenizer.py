"""The demo model's tokenizer: byte-level BPE trained on the corpus, with the chat format's special tokens."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>"]
EOS = "<|end|>"
PAD = "<|pad|>"
# The generation prompt opens the assistant turn; each turn ends with <|end|> (the EOS) and a newline.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{%- endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE; digits are split one per token so the model copies numbers digit by digit."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"])
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


def make_config_portable(directory: Path) -> None:
    """Rewrite the saved tokenizer_config.json in the form both ends of the supported transformers
    range read: transformers 5 writes `TokenizersBackend` and `extra_special_tokens`, which 4.56
    cannot load; `PreTrainedTokenizerFast` with `additional_special_tokens` gives the same token ids
    in both."""
    path = directory / "tokenizer_config.json"
    config = json.loads(path.read_text())
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        config["additional_special_tokens"] = extra
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("local_files_only", None)  # how it was loaded, not what it is
    path.write_text(json.dumps(config, indent=2) + "\n")
