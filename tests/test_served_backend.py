"""A model behind an OpenAI-compatible server (`--backend openai`): llama.cpp's server, started here by
llama-cpp-python on a tiny GGUF file that the test writes, answers as the same weights do locally.

The tiny model's vocabulary has no token for a lone byte of a longer UTF-8 character: the server
names such tokens, and special tokens, by the empty text, and the backend reads the empty text as
end-of-sequence (agent.model.openai_backend says why). The server keeps its KV in float32 here, so
its log-probs agree with a float32 forward pass to ~1e-6; the tolerance below is 1e-4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from agent.config import DecodeConfig
from agent.model.openai_backend import OpenAIBackend, load_served
from agent.model.runtime import LoadedModel, load_model
from agent.model_info import describe_loaded, info_text
from agent.tooling.registry import default_registry
from agent.turn import ChatSession
from gguf_writer import write_gguf
from tiny_model import build_tiny_llama

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
from llama_server import LlamaServer, hit_rate  # noqa: E402

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ascii_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("served")
    model_dir = build_tiny_llama(folder / "model", all_bytes=False)
    return model_dir, write_gguf(folder / "tiny.gguf", model_dir)


@pytest.fixture(scope="module")
def server(ascii_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("server-log") / "server.log"
    with LlamaServer(ascii_model[1], log=log, float32_kv=True) as running:
        yield running


@pytest.fixture(scope="module")
def local(ascii_model: tuple[Path, Path]) -> LoadedModel:
    return load_model(str(ascii_model[0]), device="cpu")


@pytest.fixture(scope="module")
def served(ascii_model: tuple[Path, Path], server: LlamaServer) -> OpenAIBackend:
    return load_served(str(ascii_model[0]), server.base_url)


def _ask(lm: object, strategy: str) -> tuple[str, list[dict[str, object]]]:
    # grounded numbers off: `auto` grounds the local model only (a server's top 20 log-probs often miss the
    # number the question wrote), and the same answers are the point here
    config = DecodeConfig(strategy=strategy, tool_choice="required", max_new_tokens=24, budget=24, beam_width=2,
                          num_samples=2, top_candidates=2, ground_numbers="off")
    session = ChatSession(lm, default_registry(), config, confirm=lambda call: False)  # type: ignore[arg-type]
    result = session.ask("What is 12 * 7?")
    calls = [{key: value for key, value in call.to_dict().items() if key != "seconds"} for call in result.tool_calls]
    return result.response, calls


def test_next_token_logprobs_over_http_are_the_local_ones(local: LoadedModel, served: OpenAIBackend) -> None:
    prompt = local.tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                                 add_generation_prompt=True, tokenize=False)
    ids = local.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for prefix in (ids, ids + local.tokenizer.encode("The answer", add_special_tokens=False)):
        mine, theirs = local.next_logprobs(prefix), served.next_logprobs(prefix)
        known = torch.isfinite(theirs)
        known[sorted(served.eos_token_ids)] = False  # named by the empty text, shared with special tokens
        assert int(known.sum()) >= 15  # the top 20, less any special tokens among them
        assert torch.equal(torch.topk(mine, 5).indices, torch.topk(theirs, 5).indices)
        assert float((mine[known] - theirs[known]).abs().max()) < TOLERANCE


def test_a_grammar_mask_gets_an_allowed_token_outside_the_top_k(local: LoadedModel, served: OpenAIBackend) -> None:
    prefix = local.tokenizer("<|user|>\nhi\n<|assistant|>\n", add_special_tokens=False)["input_ids"]
    mine = local.next_logprobs(prefix)
    unlikely = int(torch.argsort(mine)[len(mine) // 2])  # far below the top 20
    allowed = torch.zeros(served.vocab_size, dtype=torch.bool)
    allowed[unlikely] = True
    theirs = served.next_logprobs(prefix, allowed)
    assert abs(float(theirs[unlikely]) - float(mine[unlikely])) < TOLERANCE


@pytest.mark.parametrize("strategy", ["greedy", "beam", "tree", "mcmc"])
def test_the_strategies_answer_over_http_as_they_do_locally(local: LoadedModel, served: OpenAIBackend,
                                                            strategy: str) -> None:
    here = _ask(local, strategy)
    there = _ask(served, strategy)
    assert there[1] and there[1][0]["tool"] in default_registry().names()  # required: a call, and it ran
    assert there == here


@pytest.mark.parametrize("strategy", ["sample", "best-of-n"])
def test_sampling_over_http_draws_from_the_top_k_and_keeps_the_grammar(served: OpenAIBackend, strategy: str) -> None:
    # Not the local answer: the server shows only the top 20 tokens, so a draw at temperature 1 comes from
    # those (mcmc draws at 1/alpha, where the top 20 hold nearly all the mass: it matches above).
    response, calls = _ask(served, strategy)
    assert response.startswith(("SEARCH(", "LOAD(", "CALL("))
    assert calls and calls[0]["tool"] in default_registry().names()


def test_a_tree_search_hits_the_servers_prefix_cache(served: OpenAIBackend, server: LlamaServer) -> None:
    before_requests, before_logged = served.stats.requests, len(server.cache_reuse())
    _ask(served, "tree")
    sent = served.stats.prompt_tokens[before_requests:]
    reused = server.cache_reuse()[before_logged:]
    # every request after the first reused the server's KV: all but its newest tokens
    assert len(reused) >= len(sent) - 1  # none after the first started from an empty cache
    assert hit_rate(sent[1:], reused[len(reused) - (len(sent) - 1):]) >= 0.9


def _agent(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_agent_run_over_http_calls_a_tool_and_says_which_model(ascii_model: tuple[Path, Path], server: LlamaServer,
                                                               tmp_path: Path) -> None:
    done = _agent("run", "What is 12 * 7?", "--model", str(ascii_model[1]), "--backend", "openai", "--base-url",
                  server.base_url, "--tool-choice", "calc", "--max-new-tokens", "16", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["tool_calls"][0]["tool"] == "calc"
    assert answer["response"].startswith('CALL(calc, expr="')
    assert server.base_url in answer["model"]


def test_a_server_that_is_not_there_is_one_clear_line(ascii_model: tuple[Path, Path], tmp_path: Path) -> None:
    done = _agent("run", "hi", "--model", str(ascii_model[0]), "--backend", "openai", "--base-url",
                  "http://127.0.0.1:9/v1", home=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "could not reach the server at http://127.0.0.1:9/v1" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--backend", "openai"], "--backend openai needs --base-url"),
    (["--base-url", "http://127.0.0.1:9/v1"], "--base-url is for --backend openai"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--strategy", "tree+grad"],
     "strategy 'tree+grad' needs the model's weights"),
])
def test_backend_options_that_cannot_work_are_refused_before_loading(args: list[str], message: str,
                                                                     tmp_path: Path) -> None:
    done = _agent("run", "hi", *args, home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_show_describes_a_served_model_from_its_config(served: OpenAIBackend, server: LlamaServer) -> None:
    # what the REPL's /show prints: the config and template known here, no parameter count or dtype
    info = describe_loaded(served, "protocol")
    assert server.base_url in info.source
    assert info.context_length == 1024 and info.layers == 2
    assert info.parameters is None and info.dtype is None
    assert "context" in info_text(info).plain
