"""A local OpenAI-compatible server on a GGUF file: llama-cpp-python's, started for the tests and benches.

`python bench/llama_server.py MODEL.gguf --port 8765` serves it (what `python -m llama_cpp.server` does),
with one change: llama.cpp's extra CPU buffer types (weight repacking for AMX and friends) are turned
off. With them, llama-cpp-python 0.3.36 built on this machine (avx512, AMX) dies with a segmentation
fault in the first decode of SmolLM2's Q4_1 file, and llama.cpp's own llama-server with an illegal
instruction (AMX tiles, likely not enabled for this sandbox); without them both run (2026-11-29). The
server's own settings (`--n_ctx`, `--n_threads`, `--verbose`...) pass through unchanged.

`LlamaServer` starts one as a child process on a free port, waits until it answers, and stops it; its
log (llama-cpp-python prints a line there for each request that reused its KV cache) is kept for
whoever measures the cache: `cache_reuse` and `hit_rate`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def without_extra_buffer_types() -> None:
    """Make every model llama-cpp-python loads from now on skip llama.cpp's extra buffer types."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    default_params = llama_cpp.llama_model_default_params

    def params() -> object:
        p = default_params()
        p.use_extra_bufts = False
        return p

    llama_module.llama_cpp.llama_model_default_params = params


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LlamaServer:
    """A server on `model` at 127.0.0.1:`port`, as a child process (a context manager): llama-cpp-python's,
    or llama.cpp's own `llama-server` when `binary` names one (bench/build_llama_server.sh builds it)."""

    def __init__(self, model: Path, *, port: int | None = None, threads: int = 1, context: int = 4096,
                 log: Path | None = None, start_timeout: float = 120.0, float32_kv: bool = False,
                 binary: Path | None = None, slots: int = 1, slot_files: Path | None = None) -> None:
        self.model = model
        self.slots = slots  # llama-server only: sequences it holds at once (a tree's rows of one pass)
        # llama-server only: where it may save a slot's KV (--slot-save-path), which lets the backend copy
        # one slot into another (agent.model.slot_router) instead of evaluating a branch again
        self.slot_files = slot_files
        self.binary = binary
        self.port = port or free_port()
        self.threads = threads
        self.context = context
        self.log_path = log
        self.start_timeout = start_timeout
        # llama.cpp keeps keys and values in float16 by default (log-probs then differ from a float32
        # forward pass by ~1e-4); float32 makes the two agree to ~1e-6, for tests that compare answers.
        self.float32_kv = float32_kv
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.binary is not None:
            # each slot keeps the KV of the branch it ran last and gets the whole context; --no-repack: the
            # repacked (AMX) weight buffers die with SIGILL here, as in llama-cpp-python
            return [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
                    "-t", str(self.threads), "-c", str(self.context * self.slots), "-np", str(self.slots),
                    "--no-webui", "--no-repack",
                    *(["-ctk", "f32", "-ctv", "f32"] if self.float32_kv else []),
                    *(["--slot-save-path", str(self.slot_files)] if self.slot_files is not None else [])]
        return [sys.executable, str(Path(__file__).resolve()), str(self.model), "--host", "127.0.0.1",
                "--port", str(self.port), "--n_threads", str(self.threads), "--n_ctx", str(self.context),
                "--verbose", "true", *(["--type_k", "0", "--type_v", "0"] if self.float32_kv else [])]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlamaServer:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 (closed by Popen's owner)
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the llama.cpp server on {self.model} exited with {self.process.returncode}"
                                   + (f"; its log: {self.log_path}" if self.log_path else ""))
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as answer:
                    json.load(answer)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                # Not listening yet: the model is still loading. Polled, as a server gives no other sign.
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the llama.cpp server on {self.model} did not answer within {self.start_timeout:.0f} s")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cache_reuse(self) -> list[int | None]:
        """Per request the server logged, in order: the prompt tokens its KV cache held already (None: the
        whole prompt). A request that reused nothing logs no line."""
        if self.log_path is None or not self.log_path.exists():
            return []
        reused: list[int | None] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            # "Llama.generate: 412 prefix-match hit, remaining 3 prompt tokens to eval"
            if "prefix-match hit" in line:
                words = line.split()
                reused.append(int(words[words.index("prefix-match") - 1]))
            elif "full prompt already cached" in line:
                reused.append(None)
        return reused


def hit_rate(sent: list[int], reused: list[int | None]) -> float:
    """The share of prompt tokens the server's cache held, over the last len(reused) requests of `sent`."""
    tail = sent[len(sent) - len(reused):]
    held = sum(n if r is None else r for n, r in zip(tail, reused))
    return held / sum(tail) if tail else 0.0


def main() -> None:
    without_extra_buffer_types()
    from llama_cpp.server.__main__ import main as serve

    sys.argv = [sys.argv[0], "--model", *sys.argv[1:]]
    serve()


if __name__ == "__main__":
    main()
