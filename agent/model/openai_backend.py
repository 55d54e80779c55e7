"""A model behind an OpenAI-compatible completions endpoint (llama.cpp's server, vLLM, SGLang...).

The decoder's one question, the next token's log-probabilities after a prefix, becomes one request to
`/v1/completions`: the whole prefix (the server's prefix cache holds all of it but the newest tokens),
one token generated, and the `logprobs` top-k of that position. The prefix goes as token ids where the
server takes them (llama.cpp's own server does), else as text that the server tokenises itself.

Servers name the top-k tokens in one of two ways. llama.cpp's own server gives each token's id (checked
once against the local tokenizer, which must be the same model's). The OpenAI form (llama-cpp-python's
server) names them by text only; the local tokenizer maps each text back to its id. What text cannot
name: tokens that are a lone byte of a longer UTF-8 character (the server drops those bytes, so they
share one text; never proposed), and special tokens, all shown as the empty text, which is read as
end-of-sequence. The grammar is kept here: where none of the top-k tokens is allowed, the request is
repeated for the whole vocabulary, so a constrained step always has a token the grammar allows, with
its true log-probability.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from agent.model.backend import BackendCapabilityError, BackendError
from agent.model.runtime import ModelLoadError, load_tokenizer, resolve_source
from agent.model.slot_router import SlotRouter

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# How many of the most likely next tokens one request asks for. Search strategies grow at most a few
# children per node; 20 leaves room for the grammar to refuse most of them before the full-vocabulary
# request is needed.
TOP_K = 20
# The file a llama.cpp server started with --slot-save-path writes a slot's KV to, to copy it into
# another slot (agent.model.slot_router): one name, overwritten by each copy, so nothing accumulates.
FORK_FILE = "agent-fork.bin"


@dataclass
class RequestStats:
    """What the backend asked of the server: requests, prompt tokens sent, and time spent waiting."""

    requests: int = 0
    full_vocabulary_requests: int = 0
    prompt_tokens: list[int] = field(default_factory=list)  # per request, as the server counted them
    cached_tokens: list[int] = field(default_factory=list)  # per request, where the server reports it
    seconds: float = 0.0
    forks: int = 0  # slot KV copies (llama.cpp's server with --slot-save-path)


def known_and_allowed(logprobs: torch.Tensor, allowed: torch.Tensor) -> bool:
    """Does the grammar allow a token whose log-prob the server gave? (The mask may be wider than the vocabulary.)"""
    width = min(logprobs.shape[0], allowed.shape[0])
    return bool(torch.isfinite(logprobs[:width][allowed[:width].to(logprobs.device)]).any())


class OpenAIBackend:
    """The model served at `base_url`, with its own tokenizer here (prompts, masks and text)."""

    holds_weights = False

    def __init__(self, tokenizer: PreTrainedTokenizerBase, base_url: str, server_model: str | None = None,
                 *, config: Any = None, top_k: int = TOP_K, timeout: float = 120.0) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.top_k = top_k
        self.device = torch.device("cpu")
        self.stats = RequestStats()
        self.server_model = server_model or self._first_served_model()
        self.model_id = f"{self.server_model} at {self.base_url}"
        self.weights_hash = "served:" + self.server_model
        self._stats_lock = threading.Lock()
        self.token_prompts: bool | None = None  # does the server take prompts as token ids? (known after one)
        self._ids_checked = False
        self._pass_lock = threading.Lock()  # one planned pass over the server's slots at a time

    # -- what the decoder asks --------------------------------------------------------------------
    @property
    def eos_token_ids(self) -> set[int]:
        eos = self.tokenizer.eos_token_id
        return {int(eos)} if eos is not None else set()

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def next_logprobs(self, prefix: Sequence[int], allowed: torch.Tensor | None = None) -> torch.Tensor:
        return self.next_logprobs_many([(prefix, allowed)])[0]

    def next_logprobs_many(self, requests: Sequence[tuple[Sequence[int], torch.Tensor | None]]) -> list[torch.Tensor]:
        """Several prefixes' next-token log-probs, their requests in flight together. On llama.cpp's server
        each goes to the slot whose KV holds most of it (agent.model.slot_router); elsewhere the server
        places them itself."""
        router = self.slot_router
        if router is None:
            return self._side_by_side(lambda index: self._next_logprobs(*requests[index]), range(len(requests)))
        with self._pass_lock:
            plan = router.plan([prefix for prefix, _ in requests])
            if plan.forks and not self._fork(plan.forks):
                # The server keeps no slot files (no --slot-save-path): without copies, a plan would leave
                # the empty slots empty, so the server places requests itself from now on (by longest prefix).
                self.slot_router = None
                return self.next_logprobs_many(requests)
            answers: dict[int, torch.Tensor] = {}

            def run_queue(slot: int) -> None:
                for index in plan.queues[slot]:
                    answers[index] = self._next_logprobs(*requests[index], slot=slot)

            self._side_by_side(run_queue, list(plan.queues))
            router.commit(plan)
        return [answers[index] for index in range(len(requests))]

    @staticmethod
    def _side_by_side(work: Any, items: Sequence[int]) -> list[Any]:
        if len(items) == 1:
            return [work(items[0])]
        with ThreadPoolExecutor(max_workers=len(items)) as pool:
            return list(pool.map(work, items))

    def _next_logprobs(self, prefix: Sequence[int], allowed: torch.Tensor | None, slot: int | None = None
                       ) -> torch.Tensor:
        logprobs = self._request(prefix, self.top_k, slot)
        if allowed is not None and not known_and_allowed(logprobs, allowed):
            # None of the top-k is allowed: the whole vocabulary, then the grammar's pick among it.
            with self._stats_lock:
                self.stats.full_vocabulary_requests += 1
            logprobs = self._request(prefix, self.vocab_size, slot)
            if not known_and_allowed(logprobs, allowed):
                raise BackendCapabilityError(
                    f"the server at {self.base_url} gave no log-probability for any token the grammar allows "
                    "here (their texts are not whole UTF-8 characters or are special tokens)")
        return logprobs

    @cached_property
    def slot_router(self) -> SlotRouter | None:
        """llama.cpp's own server names its slots (GET /props: total_slots) and takes `id_slot`: a router
        for them. Other servers place requests themselves (vLLM and SGLang share prefixes across all their
        sequences anyway)."""
        try:
            props = self._get("/props", root=True)
        except BackendError:
            return None
        slots = props.get("total_slots")
        return SlotRouter(slots) if isinstance(slots, int) and slots > 0 else None

    def _fork(self, forks: list[tuple[int, int]]) -> bool:
        """Copy each source slot's KV into its destination (save to FORK_FILE, restore from it); False when
        the server refuses (started without --slot-save-path)."""
        for source, destination in forks:
            try:
                self._post(f"/slots/{source}?action=save", {"filename": FORK_FILE}, root=True)
                self._post(f"/slots/{destination}?action=restore", {"filename": FORK_FILE}, root=True)
            except BackendError as exc:
                if exc.status is None:
                    raise  # the server is gone: the pass would fail anyway, say so now
                return False
            with self._stats_lock:
                self.stats.forks += 1
        return True

    # -- the server -------------------------------------------------------------------------------
    def _request(self, prefix: Sequence[int], top_k: int, slot: int | None = None) -> torch.Tensor:
        # min_tokens: a server stops without a token, and so without log-probs, when it draws end-of-sequence;
        # it bans that draw but not the log-prob it reports for it (llama.cpp's and vLLM's servers).
        body: dict[str, Any] = {"model": self.server_model, "max_tokens": 1, "min_tokens": 1, "temperature": 0.0,
                                "logprobs": top_k}
        if slot is not None:
            body["id_slot"] = slot  # llama.cpp's server: the slot the router chose
        answer = self._complete(prefix, body)
        try:
            named = answer["choices"][0]["logprobs"] or {}
        except (KeyError, IndexError, TypeError):
            named = {}
        logprobs = torch.full((self.vocab_size,), float("-inf"))
        if named.get("content"):  # llama.cpp's own server: every entry names its token id
            entries = named["content"][0].get("top_logprobs") or []
            self._check_ids(entries)
            for entry in entries:
                logprobs[int(entry["id"])] = float(entry["logprob"])
        elif named.get("top_logprobs"):  # the OpenAI form: tokens named by their text only
            for piece, value in named["top_logprobs"][0].items():
                for token in self.ids_by_text.get(piece, ()):
                    logprobs[token] = float(value)
        else:
            raise BackendCapabilityError(
                f"the server at {self.base_url} returned no top log-probabilities (`logprobs`), which every "
                "strategy needs")
        # What the server's prefix cache held: OpenAI's usage field, or llama.cpp's own timings.
        cached = ((answer.get("usage") or {}).get("prompt_tokens_details") or {}).get("cached_tokens")
        if cached is None:
            cached = (answer.get("timings") or {}).get("cache_n")
        with self._stats_lock:  # the token tree has several requests in flight
            self.stats.prompt_tokens.append(int((answer.get("usage") or {}).get("prompt_tokens", 0)))
            if cached is not None:
                self.stats.cached_tokens.append(int(cached))
        return logprobs

    def _complete(self, prefix: Sequence[int], body: dict[str, Any]) -> dict[str, Any]:
        """A completion after `prefix`: sent as token ids where the server takes them (OpenAI's API allows a
        list of ids; llama.cpp's and vLLM's servers take it), so it sees exactly our tokens; else as text."""
        if self.token_prompts is not False:
            try:
                answer = self._post("/completions", {**body, "prompt": list(prefix)})
                self.token_prompts = True
                return answer
            except BackendError as exc:
                if self.token_prompts or exc.status is None:
                    raise
                # Refused (llama-cpp-python's server answers 500 to a list prompt): it takes text only. Had
                # the server failed for another reason, the text request fails too and says so.
                self.token_prompts = False
        return self._post("/completions", {**body, "prompt": self.tokenizer.decode(list(prefix),
                                                                                    skip_special_tokens=False)})

    def _check_ids(self, entries: list[dict[str, Any]]) -> None:
        """Once: the server's token ids are this tokenizer's (the same model on both sides)."""
        if self._ids_checked:
            return
        for entry in entries:
            token, text = int(entry["id"]), str(entry.get("token", ""))
            mine = self.tokenizer.decode([token], skip_special_tokens=False) if 0 <= token < self.vocab_size else None
            if text and "\ufffd" not in (mine or "") and mine != text and token not in self.tokenizer.all_special_ids:
                raise BackendError(
                    f"the server at {self.base_url} names token {token} {text!r}, which --model's tokenizer calls "
                    f"{mine!r}: the served model and --model must be the same model")
        self._ids_checked = True

    def _first_served_model(self) -> str:
        models = self._get("/models").get("data") or []
        if not models:
            raise BackendError(f"the server at {self.base_url} serves no model (GET /models listed none)")
        return str(models[0]["id"])

    @property
    def server_root(self) -> str:
        """The server's own endpoints (llama.cpp's /props and /slots) live beside the OpenAI ones under /v1."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def _get(self, path: str, *, root: bool = False) -> dict[str, Any]:
        return self._send(urllib.request.Request((self.server_root if root else self.base_url) + path))

    def _post(self, path: str, body: dict[str, Any], *, root: bool = False) -> dict[str, Any]:
        url = (self.server_root if root else self.base_url) + path
        request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        try:
            return self._send(request)
        finally:
            with self._stats_lock:
                self.stats.requests += 1
                self.stats.seconds += time.perf_counter() - started

    def _send(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return dict(json.load(answer))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise BackendError(f"{request.full_url}: the server answered {exc.code} {exc.reason}: {detail}",
                               status=exc.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendError(f"could not reach the server at {self.base_url}: {reason}") from None
        except json.JSONDecodeError:
            raise BackendError(f"{request.full_url}: the server's answer is not JSON") from None

    @cached_property
    def ids_by_text(self) -> dict[str, list[int]]:
        """Each text the server may name a token by -> the token ids with that text. Built at the first
        answer in the text form (a pass over the whole vocabulary): a server that names ids never needs it."""
        special = set(self.tokenizer.all_special_ids)
        ids_by_text: dict[str, list[int]] = {"": sorted(self.eos_token_ids)}
        texts = self.tokenizer.batch_decode([[i] for i in range(self.vocab_size)], skip_special_tokens=False)
        for token, text in enumerate(texts):
            if token in special or "\ufffd" in text or not text:
                continue
            ids_by_text.setdefault(text, []).append(token)
        return ids_by_text


def load_served(name_or_path: str, base_url: str, server_model: str | None = None) -> OpenAIBackend:
    """The model served at `base_url`, with the tokenizer, chat template and config of `name_or_path` (the
    same model here: a directory, a .gguf file or a cached hub id; its weights are not loaded)."""
    from transformers import AutoConfig  # transformers takes seconds to import: only when a model loads

    source, local, _, _ = resolve_source(name_or_path)
    offline = local or os.environ.get("HF_HUB_OFFLINE") == "1"
    tokenizer = load_tokenizer(name_or_path, source, offline)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=offline)
    except Exception as exc:  # transformers raises many kinds here
        raise ModelLoadError(f"could not load the config of {name_or_path!r}: {exc}") from exc
    return OpenAIBackend(tokenizer, base_url, server_model, config=config)
