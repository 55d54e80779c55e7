"""Model runtime: load a Hugging Face causal LM and its tokenizer, offline, on the best device."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from agent.model.gguf import GGUFError, ensure_converted, is_gguf_path

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase


class ModelLoadError(Exception):
    """A model could not be loaded; the message says what was wrong and where."""


@dataclass
class LoadedModel:
    """A causal LM ready for decoding, with what the store needs to identify it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    device: torch.device
    dtype: torch.dtype
    weights_hash: str
    # The name the model's forward takes its KV cache by: `cache` in newer transformers (which warn
    # about `past_key_values` on every call), `past_key_values` in older ones. Read once at load.
    cache_keyword: str = "past_key_values"
    holds_weights = True  # agent.model.backend.ModelBackend: the weights are here

    def next_logprobs(self, prefix: Sequence[int], allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities [vocab] of the token after `prefix`, from one forward pass over all of it (the
        backend interface's plain path: the strategies run their own KV caches on this model instead)."""
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([list(prefix)], device=self.device)).logits[0, -1]
        return torch.log_softmax(logits.float(), dim=-1)

    def next_logprobs_many(self, requests: Sequence[tuple[Sequence[int], torch.Tensor | None]]) -> list[torch.Tensor]:
        return [self.next_logprobs(prefix, allowed) for prefix, allowed in requests]

    def run(self, cache: Cache, **inputs: torch.Tensor) -> Any:
        """One forward pass on top of `cache` (extended in place); returns the model's output."""
        return self.model(**inputs, **{self.cache_keyword: cache}, use_cache=True)

    @property
    def config(self) -> Any:
        """The model's transformers config (context length, architecture)."""
        return self.model.config

    @property
    def vocab_size(self) -> int:
        """Width of the logits (may exceed the tokenizer's vocabulary)."""
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def eos_token_ids(self) -> set[int]:
        """Every token id that ends a response: the generation config's and the tokenizer's."""
        ids: set[int] = set()
        generation_config = self.model.generation_config
        configured = generation_config.eos_token_id if generation_config is not None else None
        for value in (configured, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids


def pick_device(requested: str | None = None) -> torch.device:
    """The device to run on: the requested one, else cuda, else mps, else cpu."""
    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(f"device {requested!r} requested but CUDA is not available")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def pick_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """float32 on CPU (exact and fast enough for small models); bfloat16/float16 on accelerators."""
    if requested and requested != "auto":
        if requested not in _DTYPES:
            raise ModelLoadError(f"unknown dtype {requested!r}; choose one of {', '.join(sorted(_DTYPES))}")
        return _DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


# Below this many parameters a CPU forward pass is a few small matrix products: thread start-up and
# barriers cost more than they save (measured on the demo model: 2 threads 5.4 s, 1 thread 0.3 s
# for the same answer on a 2-core machine with one core busy).
SMALL_MODEL_PARAMS = 50_000_000


def pick_threads(model: torch.nn.Module, device: torch.device, requested: int | None = None) -> int:
    """CPU threads for torch: the requested number, else 1 for small models, else torch's default."""
    if requested:
        return requested
    env = os.environ.get("AGENT_THREADS")
    if env:
        return int(env)
    if device.type == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
        return 1
    return torch.get_num_threads()


def weights_fingerprint(path: Path) -> str:
    """A short hash identifying a local model's weights (file names, sizes and the config)."""
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.suffix in (".safetensors", ".bin", ".json", ".model"):
            digest.update(file.name.encode())
            digest.update(str(file.stat().st_size).encode())
            if file.name == "config.json" or file.stat().st_size < 1_000_000:
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def cache_keyword_of(model: torch.nn.Module) -> str:
    """`cache` where the model's forward names its KV cache so, else the older `past_key_values`."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _check_model_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelLoadError(f"model path {str(path)!r} is not a directory")
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(
            f"{str(path)!r} is not a model directory: it has no config.json "
            "(expected a directory written by save_pretrained, with config.json, weights and tokenizer files)"
        )
    try:
        json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config}: config.json is not valid JSON ({exc})") from exc
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    if not has_weights:
        raise ModelLoadError(f"{str(path)!r} has a config.json but no weights (*.safetensors or *.bin)")


def load_model(name_or_path: str, device: str | None = None, dtype: str | None = None,
               threads: int | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer from a local directory, a .gguf file (converted once, see
    agent.model.gguf) or the local Hugging Face cache.

    threads: CPU threads for torch (None: AGENT_THREADS, else 1 for small models, else torch's default).
    """
    # Imported here, not at the top: transformers takes seconds to import, and the CLI's other
    # commands (sessions, tools, --help) never load a model.
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    # Tools run in forked workers (agent.tooling.worker); a fork after the tokenizer's Rust thread pool
    # ran makes `tokenizers` print a warning on every call. Our prompts are one sequence: no pool is needed.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    source, local, path, fingerprint = resolve_source(name_or_path)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    offline = local or os.environ.get("HF_HUB_OFFLINE") == "1"
    tokenizer = load_tokenizer(name_or_path, source, offline)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=offline)
    except Exception as exc:
        raise ModelLoadError(f"could not load the model {name_or_path!r}: {exc}") from exc
    model.to(torch_device)
    torch.set_num_threads(pick_threads(model, torch_device, threads))
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        model_id=str(path.resolve()) if local else name_or_path,
        device=torch_device,
        dtype=torch_dtype,
        weights_hash=fingerprint,
        cache_keyword=cache_keyword_of(model),
    )


def resolve_source(name_or_path: str) -> tuple[str, bool, Path, str]:
    """Where a model's files are (a .gguf file converted once, see agent.model.gguf), whether they are
    local, the path the user named, and the weights' fingerprint."""
    path = Path(name_or_path).expanduser()
    local = path.exists() or name_or_path.startswith((".", "/", "~"))
    if is_gguf_path(name_or_path) and not path.is_dir():
        # converted once into the agent home; the session records the file the user named, by its content
        try:
            conversion = ensure_converted(name_or_path)
        except GGUFError as exc:
            raise ModelLoadError(str(exc)) from exc
        local, path = True, path.resolve()
        source = str(conversion.directory)
        _check_model_dir(conversion.directory)
        fingerprint = conversion.sha256[:16]
    elif local:
        _check_model_dir(path)
        source = str(path)
        fingerprint = weights_fingerprint(path)
    else:
        source = name_or_path
        fingerprint = "hub:" + name_or_path
    return source, local, path, fingerprint


def load_tokenizer(name_or_path: str, source: str, offline: bool) -> PreTrainedTokenizerBase:
    """The tokenizer (and chat template) of the model at `source`; a clear error naming `name_or_path`."""
    from transformers import AutoTokenizer  # transformers takes seconds to import: only when a model loads

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=offline)
    except Exception as exc:  # transformers raises many kinds here
        raise ModelLoadError(f"could not load the tokenizer of {name_or_path!r}: {exc}") from exc
