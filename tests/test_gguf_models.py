"""GGUF model files (issue 12): `--model FILE.gguf` converts once into the agent home, later runs load the
cached copy, `agent models` lists and removes conversions, and a file that cannot be used is one clear line.

The GGUF files are written here with the `gguf` package from the tiny random Llama of tiny_model.py, in
llama.cpp's layout (tensor names, q/k row order, a byte-level BPE vocabulary in the metadata), so the
converted model can be checked against the original logit for logit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import gguf
import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForCausalLM, AutoTokenizer

from agent.cli import main
from agent.model.model_cache import indexed_hash, remember_hash
from gguf_writer import write_gguf
from tiny_model import CHAT_TEMPLATE


def agent(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    # an empty Hugging Face cache: `agent models` lists the user's cached hub models too
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(home / "hub")}
    env.pop("AGENT_KB", None)
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


class Outcome(NamedTuple):
    """What a command left: its exit status and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


Run = Callable[[Path], Outcome]


@pytest.fixture()
def run_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """`agent run hi --model FILE` in this process (click's runner) in an empty agent home: quick for
    the files refused before any model loads."""
    monkeypatch.setenv("AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENT_KB", raising=False)

    def run(model: Path) -> Outcome:
        result = CliRunner().invoke(main, ["run", "hi", "--model", str(model)])
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return run


def one_line_error(done: Outcome | subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def models_json(home: Path) -> list[dict[str, object]]:
    done = agent("models", "--json", home=home)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_gguf_file_is_converted_once_and_answers(tmp_path: Path, tiny_model_dir: Path) -> None:
    gguf_file = write_gguf(tmp_path / "tiny.gguf", tiny_model_dir)
    home = tmp_path / "home"
    models = home / "models"
    # a conversion a killed process left behind is cleared by the next conversion
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = models / f".partial-{dead.pid}-xyz"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")

    first = agent("run", "hi", "--model", str(gguf_file), "--max-new-tokens", "3", "--json", home=home)
    assert first.returncode == 0, first.stderr
    assert "converting tiny.gguf" in first.stderr
    answer = json.loads(first.stdout)
    assert answer["model"] == str(gguf_file.resolve()) and answer["new_tokens"] >= 1
    assert not leftover.exists()

    [demo, entry] = models_json(home)
    assert demo["name"] == "demo" and demo["kind"] == "demo"
    assert entry["name"] == "tiny.gguf" and entry["source"] == str(gguf_file.resolve())
    assert entry["architecture"] == "llama" and entry["parameters"] and entry["size_bytes"]
    cached = Path(str(entry["path"]))
    assert cached.parent == models and len(cached.name) == 16
    source = json.loads((cached / "source.json").read_text())
    assert source["file_size"] == gguf_file.stat().st_size and source["sha256"].startswith(cached.name)

    second = agent("run", "hi", "--model", str(gguf_file), "--max-new-tokens", "3", "--json", home=home)
    assert second.returncode == 0, second.stderr
    assert "convert" not in second.stderr
    assert json.loads(second.stdout)["response"] == answer["response"]
    assert json.loads((cached / "source.json").read_text())["converted_at"] == source["converted_at"]

    # the chat template survived, and the weights are the original model's, logit for logit
    assert AutoTokenizer.from_pretrained(cached).chat_template == CHAT_TEMPLATE
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits
    converted = AutoModelForCausalLM.from_pretrained(cached)(ids).logits
    torch.testing.assert_close(converted, original, rtol=1e-4, atol=1e-4)

    listed = agent("models", home=home)
    assert listed.returncode == 0 and "tiny.gguf" in listed.stdout and cached.name in listed.stdout
    one_line_error(agent("models", "remove", "nope.gguf", home=home), "nope.gguf", "tiny.gguf")
    removed = agent("models", "remove", cached.name[:6], home=home)
    assert removed.returncode == 0, removed.stderr
    assert "removed tiny.gguf" in removed.stdout and not cached.exists() and gguf_file.exists()
    assert [e["name"] for e in models_json(home)] == ["demo"]


def test_an_unsupported_architecture_is_one_line_naming_the_file(tmp_path: Path, tiny_model_dir: Path,
                                                                 run_here: Run) -> None:
    odd = write_gguf(tmp_path / "odd.gguf", tiny_model_dir, architecture="nosucharch")
    one_line_error(run_here(odd), str(odd), "'nosucharch'", "llama")
    assert list((tmp_path / "home" / "models").iterdir()) == []  # nothing hashed, nothing half-made


def test_an_unsupported_quantisation_is_named(tmp_path: Path, tiny_model_dir: Path, run_here: Run) -> None:
    q81 = write_gguf(tmp_path / "q81.gguf", tiny_model_dir, raw_type=gguf.GGMLQuantizationType.Q8_1)
    one_line_error(run_here(q81), str(q81), "Q8_1")


@pytest.mark.parametrize("content", [b"", b"not a model at all\n", b"GGUA" + bytes(60)],
                         ids=["empty", "text", "other-magic"])
def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path, content: bytes, run_here: Run) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(content)
    one_line_error(run_here(fake), str(fake), "not a GGUF file")


def test_a_gguf_file_cut_short_is_refused(tmp_path: Path, tiny_model_dir: Path, run_here: Run) -> None:
    whole = write_gguf(tmp_path / "whole.gguf", tiny_model_dir).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: len(whole) // 2])  # an unfinished download
    one_line_error(run_here(cut), str(cut), "could not be read as GGUF")


def test_a_missing_gguf_file_is_named(tmp_path: Path, run_here: Run) -> None:
    one_line_error(run_here(tmp_path / "absent.gguf"), "absent.gguf", "does not exist")


def test_the_hash_index_is_trusted_only_while_size_and_mtime_are_unchanged(tmp_path: Path) -> None:
    file = tmp_path / "weights.gguf"
    file.write_bytes(b"GGUF one")
    remember_hash(tmp_path, file, "ab" * 32)
    assert indexed_hash(tmp_path, file) == "ab" * 32
    file.write_bytes(b"GGUF two, longer")
    assert indexed_hash(tmp_path, file) is None
