"""The shipped demo model: corpus, knowledge base, training script and weights.

The weights are trained by `python -m training.train` (see MODEL_CARD.md in the weights
directory) and are the offline default of `agent chat` / `agent run`; the knowledge base documents
in `kb/docs.jsonl` seed the default SEARCH corpus.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def demo_model_dir() -> Path:
    """The committed weights directory (config.json, model.safetensors, tokenizer, MODEL_CARD.md)."""
    return _HERE / "weights"


def demo_kb_docs_path() -> Path:
    """The knowledge base shipped with the demo model: one {"id", "title", "text"} JSON object per line."""
    return _HERE / "kb" / "docs.jsonl"
