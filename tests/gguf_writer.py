"""A tiny model as a GGUF file, written with the `gguf` package in llama.cpp's layout (tensor names, q/k row
order, a byte-level BPE vocabulary in the metadata): converted by tests/test_gguf_models.py, served by
llama.cpp in tests/test_served_backend.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from tiny_model import CHAT_TEMPLATE

_LAYER_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                "mlp.down_proj": "ffn_down"}


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's row order for q and k (its rotary embedding pairs neighbouring rows)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _gguf_name(name: str) -> str | None:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return None  # tied to the embeddings: llama.cpp writes no output.weight then
    _, _, layer, rest = name.split(".", 3)
    module, _, kind = rest.rpartition(".")
    return f"blk.{layer}.{_LAYER_NAMES[module]}.{kind}"


def write_gguf(path: Path, model_dir: Path, *, architecture: str = "llama", chat_template: str | None = CHAT_TEMPLATE,
               raw_type: gguf.GGMLQuantizationType | None = None) -> Path:
    """The tiny Llama in `model_dir` as a GGUF file; `raw_type` adds one extra tensor of that quantisation."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    config = model.config
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab: dict[str, int] = backend["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    specials = set(tokenizer.all_special_tokens)
    writer = gguf.GGUFWriter(path, architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the GPT-2 split that ByteLevel(use_regex) makes: llama.cpp tokenises alike
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in specials else 1 for token in tokens])  # 3: control, 1: normal
    writer.add_token_merges([" ".join(merge) if isinstance(merge, list) else merge
                             for merge in backend["model"]["merges"]])
    # a real GGUF file names its BOS token even when it does not add it (transformers before 5.x needs it)
    writer.add_bos_token_id(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for name, tensor in model.state_dict().items():
        target = _gguf_name(name)
        if target is None:
            continue
        weights = tensor.float().numpy()
        if target.endswith("attn_q.weight"):
            weights = _permute(weights, config.num_attention_heads)
        elif target.endswith("attn_k.weight"):
            weights = _permute(weights, config.num_key_value_heads)
        writer.add_tensor(target, weights)
    if raw_type is not None:
        type_size = gguf.GGML_QUANT_SIZES[raw_type][1]  # bytes per block: the rows are given in bytes
        writer.add_tensor("extra.weight", np.zeros((4, type_size), dtype=np.uint8), raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
