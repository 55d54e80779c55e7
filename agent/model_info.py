"""What a model is, as `/show` and `agent models show NAME` print it: architecture, parameters, context
length, vocabulary, the chat template and the tool-call format that template gives.

`describe_loaded` reads a model already loaded (the REPL's); `describe_source` reads only the config
and the tokenizer of a folder or a cached hub model (no weights: parameters are counted from the
safetensors headers).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from safetensors import SafetensorError, safe_open

from agent.render import model_label
from agent.safe_text import printable

if TYPE_CHECKING:
    from agent.model.backend import ModelBackend
    from agent.model.runtime import LoadedModel

PLAIN_TEMPLATE = "none: the plain ### System / ### User / ### Assistant template is used"


@dataclass
class ModelInfo:
    name: str
    source: str  # the folder or hub id the files come from
    architecture: str | None
    model_type: str | None
    parameters: int | None
    context_length: int | None
    vocab_size: int | None
    layers: int | None
    hidden_size: int | None
    dtype: str | None  # as stored (config), or as loaded (the REPL's)
    chat_template: str | None
    tool_format: str  # what --tool-format auto picks from the template (or the session's)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def safetensors_parameters(directory: Path) -> int | None:
    """Parameters counted from the safetensors headers (the tensors' shapes): no weights read. None when
    there are no such files or one cannot be read."""
    files = sorted(directory.glob("*.safetensors"))
    total = 0
    for file in files:
        try:
            with safe_open(str(file), framework="numpy") as tensors:
                total += sum(math.prod(tensors.get_slice(name).get_shape()) for name in tensors.keys())
        except (OSError, SafetensorError):
            return None
    return total if files else None


def _from_config(name: str, source: str, config: Any, tokenizer: Any, parameters: int | None, dtype: str | None,
                 tool_format: str) -> ModelInfo:
    from agent.context import context_length_of  # the tokenizer helpers: only when a model is described

    architectures = getattr(config, "architectures", None) or []
    return ModelInfo(
        name=name, source=source, architecture=architectures[0] if architectures else None,
        model_type=getattr(config, "model_type", None), parameters=parameters,
        context_length=context_length_of(config, tokenizer), vocab_size=getattr(config, "vocab_size", None),
        layers=getattr(config, "num_hidden_layers", None), hidden_size=getattr(config, "hidden_size", None),
        dtype=dtype, chat_template=getattr(tokenizer, "chat_template", None) or None, tool_format=tool_format)


def describe_loaded(lm: LoadedModel | ModelBackend, tool_format: str) -> ModelInfo:
    """The REPL's model as loaded (its device's dtype; parameters counted in memory)."""
    if not lm.holds_weights:  # a served model: its config is known here, its weights and dtype are the server's
        return _from_config(lm.model_id, lm.model_id, lm.config, lm.tokenizer, None, None, tool_format)
    parameters = sum(p.numel() for p in lm.model.parameters())
    return _from_config(model_label(lm.model_id), lm.model_id, lm.model.config, lm.tokenizer, parameters,
                        str(lm.dtype).replace("torch.", ""), tool_format)


def describe_source(name: str, source: str, directory: Path | None) -> ModelInfo:
    """A model by its files (`directory`, or a hub id in the local cache), without loading its weights.
    ValueError naming the model when its config or tokenizer cannot be read."""
    # transformers takes seconds to import: only when a model is described, never for `agent models` alone
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from agent.grammar.native.resolve import detect_tool_format

    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as exc:  # transformers raises many kinds here
        raise ValueError(f"cannot read the model {name!r} ({source}): {exc}") from None
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    parameters = safetensors_parameters(directory) if directory is not None else None
    return _from_config(name, source, config, tokenizer, parameters,
                        None if dtype is None else str(dtype).replace("torch.", ""),
                        detect_tool_format(getattr(tokenizer, "chat_template", None)))


def count(value: int | None) -> str:
    if not value:
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return str(value)


def info_text(info: ModelInfo) -> Text:
    """The figures one per line, then the chat template as it is (printable)."""
    rows = [
        ("model", info.name), ("source", info.source),
        ("architecture", f"{info.architecture or '-'} ({info.model_type or '-'})"),
        ("parameters", f"{count(info.parameters)} ({info.parameters})" if info.parameters else "-"),
        ("context length", f"{info.context_length} tokens" if info.context_length else "unknown"),
        ("vocabulary", str(info.vocab_size or "-")),
        ("layers", str(info.layers or "-")), ("hidden size", str(info.hidden_size or "-")),
        ("dtype", info.dtype or "-"), ("tool format", info.tool_format),
    ]
    text = Text()
    for label, value in rows:
        text.append(f"{label:<15}", style="bold")
        text.append(printable(value) + "\n")
    text.append("chat template", style="bold")
    if info.chat_template is None:
        text.append("  " + PLAIN_TEMPLATE + "\n")
    else:
        text.append("\n" + printable(info.chat_template).rstrip() + "\n", style="dim")
    return text
