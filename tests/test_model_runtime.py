"""Model loading: devices, dtypes, threads, fingerprints and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agent.model.runtime import LoadedModel, ModelLoadError, load_model, pick_device, pick_dtype, pick_threads


def test_small_models_run_on_one_cpu_thread_unless_told(tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_threads(tiny_lm.model, torch.device("cpu")) == 1
    assert pick_threads(tiny_lm.model, torch.device("cpu"), requested=3) == 3
    monkeypatch.setenv("AGENT_THREADS", "2")
    assert pick_threads(tiny_lm.model, torch.device("cpu")) == 2


def test_device_and_dtype_are_chosen_and_overridable() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device(None).type in ("cpu", "mps")
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            pick_device("cuda")
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        pick_dtype(torch.device("cpu"), "float8")


def test_loaded_model_knows_its_identity(tiny_model_dir: Path) -> None:
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    again = load_model(str(tiny_model_dir), device="cpu")
    assert lm.weights_hash == again.weights_hash and len(lm.weights_hash) == 16
    assert lm.model_id == str(tiny_model_dir.resolve())
    assert lm.tokenizer.eos_token_id in lm.eos_token_ids
    assert lm.vocab_size >= len(lm.tokenizer)


@pytest.mark.parametrize("broken", ["no config", "bad json", "no weights", "a file"])
def test_what_is_not_a_model_says_why(tmp_path: Path, tiny_model_dir: Path, broken: str) -> None:
    target = tmp_path / "model"
    target.mkdir()
    if broken == "bad json":
        (target / "config.json").write_text("{not json")
    elif broken == "no weights":
        (target / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    elif broken == "a file":
        target = tmp_path / "model.bin"
        target.write_text("x")
    with pytest.raises(ModelLoadError) as info:
        load_model(str(target))
    message = str(info.value)
    assert str(target) in message or "config.json" in message
    expected = {"no config": "no config.json", "bad json": "not valid JSON", "no weights": "no weights",
                "a file": "not a directory"}[broken]
    assert expected in message
