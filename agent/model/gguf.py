"""GGUF files (llama.cpp, Ollama): converted once into a transformers model directory, cached by content.

`ensure_converted` checks the file (magic, architecture, quantisation types) before the long work,
hashes it (once: agent.model.model_cache remembers the hash by path, size and mtime), then loads it
with transformers' GGUF loader, which dequantizes the weights, and saves model and tokenizer with
`save_pretrained` into a temporary folder renamed into place at the end: an interrupted conversion
leaves nothing that looks converted. A spinner on stderr says which step is running.

gguf and transformers are imported inside the functions that convert: a cached model needs neither.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from agent.model.model_cache import (
    SOURCE_FILE,
    Conversion,
    indexed_hash,
    models_dir,
    partial_dir,
    read_conversion,
    remember_hash,
    remove_stale_partials,
    write_json,
)

MAGIC = b"GGUF"
_HASH_CHUNK = 8 * 1024 * 1024
# Entries of transformers' GGUF config mapping that are metadata sections, not architectures.
_NOT_ARCHITECTURES = {"general", "tokenizer"}


class GGUFError(Exception):
    """A GGUF file could not be used: the message names the file and what is wrong.

    agent.model.runtime turns it into ModelLoadError (this module stays free of torch, which
    runtime imports, so `agent models` starts quickly)."""


def is_gguf_path(name: str) -> bool:
    """Whether --model names a GGUF file (by its extension, as llama.cpp and Ollama name them)."""
    return name.lower().endswith(".gguf")


def _stderr() -> Console:
    # bound to the stderr of now: the conversion silences transformers' own bars by swapping sys.stderr
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# The source file: present, GGUF, readable


def _check_source(name: str) -> Path:
    path = Path(name).expanduser()
    if not path.exists():
        raise GGUFError(f"GGUF file {name!r} does not exist")
    if not path.is_file():
        raise GGUFError(f"{name!r} is not a file (a .gguf model is one file)")
    path = path.resolve()
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if magic != MAGIC:
        raise GGUFError(f"{path} is not a GGUF file (it does not start with the bytes 'GGUF'); "
                        "--model takes a .gguf file or a directory written by save_pretrained")
    for package in ("gguf", "accelerate"):  # transformers' GGUF loader needs both, and says so less plainly
        if importlib.util.find_spec(package) is None:
            raise GGUFError(f"reading {path.name} needs the {package} package: pip install {package} "
                            "(or pip install 'agent-shell[gguf]')")
    return path


@dataclass(frozen=True)
class _Metadata:
    architecture: str
    chat_template: str | None
    weights: int  # elements in all tensors: the converted copy takes 4 bytes each (float32)


def _read_metadata(path: Path) -> _Metadata:
    """Architecture and chat template from the header; refuses quantisation types gguf cannot dequantize."""
    # gguf (and numpy) only when a file is converted: a cached model never needs them.
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGUFReader
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, KeyError, IndexError on damaged headers
        if "GGMLQuantizationType" in str(exc):
            raise GGUFError(f"{path}: it uses a quantisation type the installed gguf package does not know "
                            f"({exc}); upgrade it (pip install -U gguf) or use a file with another "
                            "quantisation (Q4_K_M, Q8_0, F16)") from exc
        raise GGUFError(f"{path} could not be read as GGUF (damaged, or an unfinished download?): {exc}") from exc

    def text(key: str) -> str | None:
        field = reader.fields.get(key)
        if field is None or not field.data:
            return None
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")

    architecture = text("general.architecture")
    if architecture is None:
        raise GGUFError(f"{path}: the GGUF header has no general.architecture; it is not a language model file")
    for qtype in sorted({tensor.tensor_type for tensor in reader.tensors}):
        # one zero block of each type used: dequantize raises NotImplementedError for the types it lacks
        block = np.zeros((1, GGML_QUANT_SIZES[qtype][1]), dtype=np.uint8)
        try:
            dequantize(block, qtype)
        except NotImplementedError as exc:
            raise GGUFError(f"{path}: quantisation type {qtype.name} is not supported (the gguf package cannot "
                            "dequantize it); use a file with another quantisation (Q4_K_M, Q8_0, F16)") from exc
    weights = sum(int(tensor.n_elements) for tensor in reader.tensors)
    return _Metadata(architecture, text("tokenizer.chat_template"), weights)


def _check_architecture(path: Path, architecture: str) -> None:
    """transformers' own check (it also renames some architectures), as a message that lists the supported."""
    # transformers takes seconds to import; only a conversion needs it.
    from transformers import __version__ as transformers_version
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES, load_gguf_checkpoint

    if architecture in GGUF_SUPPORTED_ARCHITECTURES and architecture not in _NOT_ARCHITECTURES:
        return
    try:  # transformers renames some (qwen2moe, t5encoder, ...): let it decide, from the header alone
        load_gguf_checkpoint(str(path), return_tensors=False)
    except ValueError as exc:
        if "not supported" not in str(exc):
            raise GGUFError(f"{path} could not be read as GGUF: {exc}") from exc
        supported = ", ".join(sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - _NOT_ARCHITECTURES))
        raise GGUFError(f"{path}: GGUF architecture {architecture!r} is not supported by transformers "
                        f"{transformers_version} (it loads: {supported})") from None


# ---------------------------------------------------------------------------------------------
# Hashing (agent.model.model_cache remembers the result by path, size and mtime)


def hash_file(path: Path) -> str:
    """The file's sha256, with a progress bar on stderr (a multi-GB file takes a while)."""
    digest = hashlib.sha256()
    columns = (TextColumn("hashing {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_stderr(), transient=True) as progress:
        task = progress.add_task(path.name, total=path.stat().st_size)
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
                progress.advance(task, len(chunk))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Converting


def _dequantized() -> dict[str, object]:
    """from_pretrained's option asking for plain tensors: newer transformers (GgufConfig) may otherwise keep
    the GGUF blocks, with kernels, which save_pretrained would write as nothing a later load can read.
    Older ones always dequantize and have no such option."""
    try:
        # transformers is already imported by the caller; the name exists only in newer versions.
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _convert(path: Path, metadata: _Metadata, digest: str, temp: Path, say: Callable[[str], None]) -> None:
    """Load the GGUF with transformers (dequantized), save it to `temp` with its tokenizer and source.json.
    `say` tells the spinner which step is running."""
    # transformers takes seconds to import; only a conversion needs it.
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    folder, name = str(path.parent), path.name
    try:
        say("reading the tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        say("dequantizing the tensors")
        # transformers' GGUF loader draws its own tqdm bar, which disable_progress_bar does not reach;
        # it would fight our spinner for the line. Our console keeps the real stderr (bound at creation).
        with redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **_dequantized())
    except NotImplementedError as exc:  # a tensor type or layout transformers does not handle
        raise GGUFError(f"{path}: transformers cannot convert it: {exc}") from exc
    except Exception as exc:  # transformers raises many kinds here
        raise GGUFError(f"{path}: conversion failed: {type(exc).__name__}: {exc}") from exc
    if not tokenizer.chat_template and metadata.chat_template:
        tokenizer.chat_template = metadata.chat_template  # some of transformers' GGUF tokenizer loaders drop it
    # save_pretrained refuses a model marked GGUF-quantized; its weights are already plain tensors.
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    say("writing the weights")
    with redirect_stderr(io.StringIO()):  # save_pretrained's shard bar, as above
        model.save_pretrained(temp)
    tokenizer.save_pretrained(temp)
    stat = path.stat()
    source = {
        "file_name": path.name,
        "source_path": str(path),
        "file_size": stat.st_size,
        "sha256": digest,
        "parameters": int(model.num_parameters()),
        "architecture": metadata.architecture,
        "model_type": str(model.config.model_type),
        "chat_template": bool(tokenizer.chat_template),
        "converted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(temp / SOURCE_FILE, source)


def _move_into_place(temp: Path, target: Path) -> None:
    if read_conversion(target) is not None:  # another process finished the same file first: keep theirs
        return
    if target.exists():  # a folder without source.json (a removal cut short): not a conversion
        shutil.rmtree(target)
    try:
        temp.rename(target)
    except OSError:
        if read_conversion(target) is None:  # not another process winning the race just now
            raise


def ensure_converted(name: str) -> Conversion:
    """The cached conversion of the GGUF file `name`, converting it first if needed (once per file content).

    GGUFError, naming the file, when it is missing, not GGUF, of an architecture or quantisation
    transformers cannot load, or when the gguf package is not installed."""
    path = _check_source(name)
    root = models_dir()
    digest = indexed_hash(root, path)
    if digest is not None:
        cached = read_conversion(root / digest[:16])
        if cached is not None:
            return cached
    started = time.monotonic()
    metadata = _read_metadata(path)
    _check_architecture(path, metadata.architecture)  # before hashing: a refused file costs no full read
    if digest is None:
        digest = hash_file(path)
        remember_hash(root, path, digest)
    target = root / digest[:16]
    cached = read_conversion(target)  # the same content under another name or path
    if cached is not None:
        return cached
    remove_stale_partials(root)
    needed, free = metadata.weights * 4, shutil.disk_usage(root).free
    if free < needed:  # said now, not after minutes of dequantizing
        raise GGUFError(f"{path}: converting it needs about {needed / 1e9:.1f} GB under {root} (weights as "
                        f"float32), and {free / 1e9:.1f} GB are free; free some space or set AGENT_HOME elsewhere")
    console = _stderr()
    console.print(f"converting {path.name} to a transformers model (once; cached in {target})")
    try:
        with console.status(f"converting {path.name}") as status, partial_dir(root) as temp:
            _convert(path, metadata, digest, temp, lambda step: status.update(f"converting {path.name}: {step}"))
            _move_into_place(temp, target)
    except OSError as exc:  # a full disk, most likely: the weights are written as float32
        raise GGUFError(f"{path}: cannot write the converted model under {root}: {exc.strerror or exc} "
                        f"(the float32 copy needs about {metadata.weights * 4 / 1e9:.1f} GB)") from exc
    console.print(f"converted {path.name} in {time.monotonic() - started:.1f} s")
    conversion = read_conversion(target)
    if conversion is None:
        raise GGUFError(f"{path}: the converted model in {target} is missing its {SOURCE_FILE}")
    return conversion
