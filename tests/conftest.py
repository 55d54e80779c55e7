"""Shared fixtures: a tiny random Llama with a tokenizer trained on the spot, built once per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before transformers (imported by tiny_model and agent.model.runtime) is imported: it reads them then.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from agent.model.runtime import LoadedModel, load_model
from tiny_model import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path) -> LoadedModel:
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture()
def agent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty AGENT_HOME so no test touches the user's files."""
    home = tmp_path / "agent-home"
    home.mkdir()
    monkeypatch.setenv("AGENT_HOME", str(home))
    return home
