"""The shipped demo model: its weights and its knowledge-base documents, as package data.

The weights are trained by `python -m training.train` from a checkout (see MODEL_CARD.md in the
weights directory) and are the offline default of `agent chat` / `agent run`; the knowledge base
documents in `kb/docs.jsonl` seed the default SEARCH corpus. Both are read through
`importlib.resources`, so they are found wherever the package is installed.
"""

from __future__ import annotations

import atexit
import functools
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

# Where the package lies in a zip, `as_file` extracts the data to a temporary copy; the copies are
# kept until the process exits (the model is loaded by path). An ordinary or editable install
# gives the files where they lie, and nothing is copied.
_EXTRACTED = ExitStack()
atexit.register(_EXTRACTED.close)


@functools.cache
def _data_path(*parts: str) -> Path:
    resource = resources.files(__name__)
    for part in parts:
        resource = resource / part
    return _EXTRACTED.enter_context(resources.as_file(resource))


def demo_model_dir() -> Path:
    """The committed weights directory (config.json, model.safetensors, tokenizer, MODEL_CARD.md)."""
    return _data_path("weights")


def demo_kb_docs_path() -> Path:
    """The knowledge base shipped with the demo model: one {"id", "title", "text"} JSON object per line."""
    return _data_path("kb", "docs.jsonl")


def is_demo_model(model_id: str) -> bool:
    """Whether a loaded model's id (its resolved path) is the shipped demo model."""
    return model_id == str(demo_model_dir().resolve())
