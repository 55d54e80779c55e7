"""Our own decode loop (not `generate`): one sequence, KV cache, streaming, tool islands.

The loop knows nothing about terminals or tools: it samples, asks the constraint what is allowed,
and forces the tokens the constraint hands back (hard islands). The KV cache of a finished turn is
kept in a PrefixCache so the next turn of the session recomputes only what is new.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.grounding import token_bias
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.results import DecodeResult
from agent.decoding.sampling import choose_token
from agent.model.backend import ModelBackend
from agent.model.runtime import LoadedModel
from agent.safe_text import pending_prefix
from agent.tooling.records import ToolCallRecord


def response_text(tokenizer: PreTrainedTokenizerBase, ids: list[int], keep_special: bool = False) -> str:
    """The text of a response's token ids.

    keep_special: keep special tokens, for a constrained response. There the grammar lets through
    only the special tokens it names (a native format's call opening, e.g. Mistral's
    `[TOOL_CALLS]`), and islands of native formats are the chat template's own text (`<|im_end|>`,
    `<|start_header_id|>`...): the next turn renders the response back through the template, and
    must meet the same tokens. End-of-sequence never is among the ids (the decoder stops on it).
    Unconstrained, special tokens are dropped as before.
    """
    return tokenizer.decode(ids, skip_special_tokens=not keep_special)


class StreamingDetokenizer:
    """Turns a growing list of token ids into text pieces, holding back incomplete UTF-8 and any ending
    that may be the start of a stop string (a stop string is never shown, even for a moment)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, keep_special: bool = False,
                 stops: list[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.keep_special = keep_special
        self.stops = [s for s in stops or [] if s]
        self.emitted = ""

    def text(self, ids: list[int]) -> str:
        return response_text(self.tokenizer, ids, self.keep_special)

    def push(self, ids: list[int]) -> str:
        text = self.text(ids)
        if text.endswith("\ufffd"):
            return ""
        return self._advance(self._before_stops(text))

    def finish(self, text: str) -> str:
        """The rest of the final text (what was held back and is not a stop string)."""
        return self._advance(text)

    def _advance(self, text: str) -> str:
        if not text.startswith(self.emitted):
            return ""
        piece = text[len(self.emitted):]
        self.emitted = text
        return piece

    def _before_stops(self, text: str) -> str:
        held = 0
        for stop in self.stops:
            if stop in text:
                text = text[: text.index(stop)]
            held = max(held, pending_prefix(text, stop))
        return text[: len(text) - held]


def forward(lm: LoadedModel, input_ids: list[int], cache: DynamicCache) -> torch.Tensor:
    """Run tokens through the model on top of the cache; returns the logits of the last position."""
    ids = torch.tensor([input_ids], dtype=torch.long, device=lm.device)
    out = lm.run(cache, input_ids=ids)
    return out.logits[0, -1]


def decode(
    lm: ModelBackend,
    prompt_ids: list[int],
    config: DecodeConfig,
    *,
    constraint: ResponseConstraint | None = None,
    on_token: Callable[[str], None] | None = None,
    prefix_cache: PrefixCache | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DecodeResult:
    """Generate one response for prompt_ids with a single-sequence loop (greedy or sampled)."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    started = time.perf_counter()
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    eos_ids = lm.eos_token_ids
    cache_owner = prefix_cache or PrefixCache()
    cache, reused = cache_owner.take(prompt_ids)
    fed_ids = list(prompt_ids[:reused])
    response: list[int] = []
    islands: list[bool] = []
    logprobs: list[float] = []
    tool_calls: list[ToolCallRecord] = []
    stop_strings = [s for s in config.stop if s]
    detok = StreamingDetokenizer(lm.tokenizer, keep_special=constraint is not None, stops=stop_strings)
    finish = "length"
    passes = 0
    eos_logprob: float | None = None
    pending = list(prompt_ids[reused:])

    def emit() -> None:
        if on_token is not None:
            piece = detok.push(response)
            if piece:
                on_token(piece)

    try:
        with torch.inference_mode():
            while True:
                if lm.holds_weights:
                    logits = forward(lm, pending, cache)
                    passes += 1
                    fed_ids.extend(pending)
                    pending = []
                model_tokens = sum(1 for island in islands if not island)
                if model_tokens >= config.max_new_tokens:
                    finish = "length"
                    break
                if should_stop is not None and should_stop():
                    finish = "interrupted"
                    break
                if constraint is not None and constraint.is_finished():
                    finish = "grammar"
                    break
                allowed = None
                if constraint is not None:
                    constraint.set_tokens_left(config.max_new_tokens - model_tokens)
                    allowed = constraint.allowed_tokens()
                    if allowed is not None and allowed.device != lm.device:
                        allowed = allowed.to(lm.device)
                if not lm.holds_weights:
                    # A served model: the log-probs after the whole sequence, the mask sent along (see
                    # agent.model.backend); the server's prefix cache holds what came before.
                    logits = lm.next_logprobs(fed_ids + pending, allowed)
                    passes += 1
                    fed_ids.extend(pending)
                    pending = []
                bias = token_bias(constraint)  # a prior over a call's numbers (agent.decoding.grounding)
                if bias is not None:
                    bias = bias.to(logits.device, logits.dtype)
                token = choose_token(logits if bias is None else logits + bias, config, response, generator, allowed)
                token_logprob = float(torch.log_softmax(logits.float(), dim=-1)[token] if lm.holds_weights
                                      else logits[token]) + (float(bias[token]) if bias is not None else 0.0)
                if token in eos_ids:
                    finish = "eos"
                    eos_logprob = token_logprob
                    break
                logprobs.append(token_logprob)
                response.append(token)
                islands.append(False)
                pending = [token]
                if constraint is not None:
                    step = constraint.accept(token)
                    if step.tool_call is not None:
                        tool_calls.append(step.tool_call)
                    if step.forced_token_ids:
                        response.extend(step.forced_token_ids)
                        islands.extend([step.forced_is_island] * len(step.forced_token_ids))
                        logprobs.extend([0.0] * len(step.forced_token_ids))
                        pending.extend(step.forced_token_ids)
                emit()
                if stop_strings:
                    tail = detok.text(response[-64:])
                    if any(s in tail for s in stop_strings):
                        finish = "stop"
                        break
        if lm.holds_weights:
            cache_owner.keep(fed_ids, cache)
    except KeyboardInterrupt:
        # The cache may hold a half-run forward pass: drop it rather than trust it.
        cache_owner.reset()
        finish = "interrupted"
    text = detok.text(response)
    if finish == "stop":
        for s in stop_strings:
            if s in text:
                text = text[: text.index(s)]
                break
    if on_token is not None:
        rest = detok.finish(text)
        if rest:
            on_token(rest)
    return DecodeResult(
        token_ids=response,
        island_mask=islands,
        logprobs=logprobs,
        text=text,
        finish_reason=finish,
        tool_calls=tool_calls,
        forward_passes=passes,
        prompt_tokens=len(prompt_ids),
        reused_prompt_tokens=reused,
        seconds=time.perf_counter() - started,
        eos_logprob=eos_logprob,
    )
