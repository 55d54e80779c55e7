"""`agent models`: the Hugging Face cache in the listing, aliases (`agent models alias`) that --model takes,
and `agent models show` (without loading weights), each through the real command line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from transformers import AutoConfig, AutoTokenizer

from agent.cli import main
from agent.model_info import safetensors_parameters

REPO_ID = "agent-tests/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def agent(*args: str, home: Path, hub: Path) -> subprocess.CompletedProcess[str]:
    """A command in its own process: huggingface_hub reads HF_HUB_CACHE once, when it is imported."""
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def cli(*args: str) -> Result:
    """A command in this process (quicker: transformers is imported already); AGENT_HOME set by the test."""
    return CliRunner().invoke(main, list(args))


def one_line_error(done: subprocess.CompletedProcess[str] | Result, *words: str) -> None:
    code = done.returncode if isinstance(done, subprocess.CompletedProcess) else done.exit_code
    assert code == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def put_in_hub_cache(hub: Path, repo_id: str, model_dir: Path) -> Path:
    """The model's files laid out as huggingface_hub keeps a download: blobs by hash, a snapshot of
    links to them, and the `main` ref naming the snapshot's commit."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for folder in (repo / "refs", repo / "blobs", snapshot):
        folder.mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for file in sorted(model_dir.iterdir()):
        if file.is_file():
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.write_bytes(file.read_bytes())
            (snapshot / file.name).symlink_to(blob)
    return snapshot


@pytest.fixture
def places(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    home, hub = tmp_path / "home", tmp_path / "hub"
    put_in_hub_cache(hub, REPO_ID, tiny_model_dir)
    return home, hub


def listed(home: Path, hub: Path) -> list[dict]:
    done = agent("models", "--json", home=home, hub=hub)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_hub_cache_is_listed_and_an_alias_loads_from_it(places: tuple[Path, Path], tiny_model_dir: Path) -> None:
    home, hub = places
    entries = {entry["name"]: entry for entry in listed(home, hub)}
    cached = entries[REPO_ID]
    assert cached["kind"] == "hf-cache" and cached["hash"] == COMMIT[:16] and cached["aliases"] == []
    assert cached["parameters"] == safetensors_parameters(tiny_model_dir) and cached["size_bytes"] > 0

    made = agent("models", "alias", "tiny", REPO_ID, home=home, hub=hub)
    assert made.returncode == 0 and made.stdout.strip() == f"tiny -> {REPO_ID}", made.stderr
    assert {entry["name"]: entry for entry in listed(home, hub)}[REPO_ID]["aliases"] == ["tiny"]
    answered = agent("run", "hi", "--model", "tiny", "--max-new-tokens", "3", "--json", home=home, hub=hub)
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["model"] == REPO_ID  # the store records what the alias named

    text = agent("models", home=home, hub=hub).stdout
    assert REPO_ID in text and "hf-cache" in text and "aliases: tiny" in text


def test_show_reads_config_and_tokenizer(places: tuple[Path, Path], tiny_model_dir: Path, agent_home: Path) -> None:
    home, hub = places
    config = AutoConfig.from_pretrained(tiny_model_dir)
    template = AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    by_folder = cli("models", "show", str(tiny_model_dir), "--json")
    assert by_folder.exit_code == 0, by_folder.output
    by_hub_id = agent("models", "show", REPO_ID, "--json", home=home, hub=hub)
    assert by_hub_id.returncode == 0, by_hub_id.stderr
    for shown in (json.loads(by_folder.stdout), json.loads(by_hub_id.stdout)):
        assert shown["context_length"] == config.max_position_embeddings
        assert shown["layers"] == config.num_hidden_layers and shown["vocab_size"] == config.vocab_size
        assert shown["parameters"] == safetensors_parameters(tiny_model_dir)
        assert shown["chat_template"] == template and shown["tool_format"] == "protocol"
    text = cli("models", "show", "demo").stdout
    assert "context length 512 tokens" in text and "tool format    protocol" in text and "chat template" in text
    one_line_error(cli("models", "show", "nope"), "no model 'nope'", "agent models")


def test_aliases_of_folders_are_listed_shown_and_removed(tiny_model_dir: Path, agent_home: Path) -> None:
    folder = str(tiny_model_dir.resolve())
    assert cli("models", "alias", "mine", str(tiny_model_dir)).exit_code == 0
    entry = next(e for e in json.loads(cli("models", "--json").stdout) if e["aliases"] == ["mine"])
    assert entry["kind"] == "folder" and entry["path"] == folder
    assert cli("models", "alias", "mine").stdout.strip() == folder
    assert cli("models", "alias").stdout.strip() == f"mine\t{folder}"
    shown = json.loads(cli("models", "show", "mine", "--json").stdout)
    assert shown["name"] == "mine" and shown["source"] == folder

    one_line_error(cli("models", "alias", "x", "no/such/folder/here"), "'no/such/folder/here'")
    one_line_error(cli("models", "alias", "demo", str(tiny_model_dir)), "'demo' cannot be")
    removed = cli("models", "alias", "mine", "--remove")
    assert removed.exit_code == 0 and f"removed alias mine (it named {folder})" in removed.stdout
    assert all(e["aliases"] == [] for e in json.loads(cli("models", "--json").stdout))
    one_line_error(cli("models", "alias", "mine", "--remove"), "no model alias 'mine'")
