"""Which tool a required call uses, chosen from the question as well as from the model's first tokens.

A small model told to open its response with a call picks the tool by the call's form more than by the
question: SmolLM2-135M-Instruct opened 8 of 16 arithmetic questions with `SEARCH(` under `--tool-choice
required` (bench/real_models.py), because the likelihood of each call's opening as a response (the
direct score) hardly depends on what was asked. The noisy channel asks the other way round: how likely is
this question from someone who wants this tool, log P(question | the tool's name and description), which
reads every word of the question. The router adds the two (a product of experts: direct x channel) and
the response must then open with a call of the best tool; the grammar constrains its arguments as usual.

Cost: the prompt runs once on the session's prefix cache (the decode that follows reuses it); then one
batched pass scores each tool's opening on top of it and the question after each tool's channel request,
whose KV is computed on the session's first routed turn and kept (ChannelPrompts). On SmolLM2 a pass costs
about what a decoded token does, whatever its few rows hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from agent.decoding.kv_cache import PrefixCache, run_prompt
from agent.decoding.path_kv import LayerKV, left_padded
from agent.model.chat_format import prompt_token_ids

if TYPE_CHECKING:
    from agent.model.runtime import LoadedModel
    from agent.tooling.spec import ToolSpec

# The channel reads at most this many tokens of the question: a long pasted text says no more about the
# tool wanted than its opening does, and each tool pays for every token read.
CHANNEL_TOKENS = 128

# Rows of one scoring pass: 8 is one pass for four tools (their openings and the question after each request).
ROWS_PER_PASS = 8


@dataclass(frozen=True)
class ToolRoute:
    """The tool a required call must use, and each tool's score (direct + channel, in nats)."""

    tool: str
    direct: dict[str, float]  # log P(the tool's call opening | the prompt)
    channel: dict[str, float]  # log P(the question | the tool's name and description)

    def to_dict(self) -> dict[str, object]:
        return {"tool": self.tool, "direct": self.direct, "channel": self.channel}


def channel_request(spec: ToolSpec) -> str:
    """The user message the channel continues with the question: what a user of this tool would ask."""
    return f"Write a question that the tool `{spec.name}` answers. {spec.name}: {spec.description}"


def score_continuations(lm: LoadedModel, pasts: list[tuple[list[LayerKV], torch.Tensor]],
                        continuations: list[list[int]]) -> list[float]:
    """log P(continuation | past) for every row, ROWS_PER_PASS rows a forward pass. A past is its KV per
    layer ([heads, length, dim]) and the logits after it. Pasts are left-padded (masked out); continuations
    are right-padded, which cannot change a row's log-probs: attention is causal, so no real token sees a
    pad."""
    if len(pasts) > ROWS_PER_PASS:  # each row holds a copy of its past's KV: many tools, several passes
        return [score for start in range(0, len(pasts), ROWS_PER_PASS)
                for score in score_continuations(lm, pasts[start:start + ROWS_PER_PASS],
                                                 continuations[start:start + ROWS_PER_PASS])]
    totals = [float(torch.log_softmax(last.float(), dim=-1)[tokens[0]])
              for (_, last), tokens in zip(pasts, continuations, strict=True)]
    new_width = max(len(tokens) for tokens in continuations) - 1  # a continuation's last token is never input
    if new_width == 0:
        return totals
    rows, device = len(pasts), lm.device
    past_lens = [kv[0][0].shape[1] for kv, _ in pasts]
    past_width = max(past_lens)
    cache = DynamicCache()
    for layer in range(len(pasts[0][0])):
        cache.update(*left_padded([kv[layer] for kv, _ in pasts], past_width), layer)
    input_ids = torch.zeros((rows, new_width), dtype=torch.long, device=device)
    positions = torch.zeros((rows, new_width), dtype=torch.long, device=device)
    mask = torch.zeros((rows, past_width + new_width), dtype=torch.long, device=device)
    for row, tokens in enumerate(continuations):
        given = tokens[:-1]
        input_ids[row, :len(given)] = torch.tensor(given, dtype=torch.long, device=device)
        positions[row] = torch.arange(past_lens[row], past_lens[row] + new_width, device=device)
        mask[row, past_width - past_lens[row]:] = 1
    with torch.inference_mode():
        logits = lm.run(cache, input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
    steps = torch.log_softmax(logits.float(), dim=-1)
    for row, tokens in enumerate(continuations):
        totals[row] += float(sum(steps[row, i, token] for i, token in enumerate(tokens[1:])))
    return totals


def layer_kv(cache: DynamicCache) -> list[LayerKV]:
    """A one-row cache's KV per layer, without the batch dimension (views, not copies)."""
    return [(layer.keys[0], layer.values[0]) for layer in cache.layers]


def opening_tokens(lm: LoadedModel, text: str, cut: int) -> list[int]:
    """The tokens of `text` (in the tokenizer's own split) that end by character `cut`: the opening of a
    call without the token that already holds part of its sample value."""
    encoded = lm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = [token for token, (_, end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
              if end <= cut]
    return tokens or lm.tokenizer.encode(text[:cut], add_special_tokens=False)


class ChannelPrompts:
    """Each tool's channel request run once: its KV and the logits after it, kept for the session's next
    turns (the request is the same every turn; only the question is new). Keyed by the request's tokens, so
    a tool whose description changes gets a new entry; the oldest go beyond `limit` entries."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.held: dict[tuple[int, ...], tuple[list[LayerKV], torch.Tensor]] = {}

    def past(self, lm: LoadedModel, spec: ToolSpec) -> tuple[list[LayerKV], torch.Tensor]:
        """The KV of `spec`'s request and the logits after it."""
        prompt = prompt_token_ids(lm.tokenizer, [{"role": "user", "content": channel_request(spec)}])
        key = tuple(prompt)
        if key not in self.held:
            while len(self.held) >= self.limit:
                del self.held[next(iter(self.held))]
            cache, last_logits, _ = run_prompt(lm, prompt, None)
            self.held[key] = (layer_kv(cache), last_logits)
        return self.held[key]


def route_call(lm: LoadedModel, prompt_ids: list[int], question: str, openings: dict[str, tuple[str, int]],
               specs: dict[str, ToolSpec], prefix_cache: PrefixCache | None,
               channel_prompts: ChannelPrompts) -> ToolRoute:
    """The tool whose call the response must open with. `openings`: each tool's call as the response would
    start it and where its arguments begin (agent.grammar.tool_format.call_openings); `specs`: the same
    tools' specs (name, description); `channel_prompts`: the session's channel requests already run."""
    cache, last_logits, _ = run_prompt(lm, prompt_ids, prefix_cache)
    encode = lm.tokenizer.encode
    names = list(openings)
    question_ids = encode(question, add_special_tokens=False)[:CHANNEL_TOKENS] or encode(" ", add_special_tokens=False)
    # each tool's opening after the prompt, and the question after each tool's request: one pass for four tools
    prompt_past = (layer_kv(cache), last_logits)
    scores = score_continuations(
        lm, [prompt_past] * len(names) + [channel_prompts.past(lm, specs[name]) for name in names],
        [opening_tokens(lm, *openings[name]) for name in names] + [question_ids] * len(names))
    direct = dict(zip(names, scores[:len(names)], strict=True))
    channel = dict(zip(names, scores[len(names):], strict=True))
    best = max(openings, key=lambda name: direct[name] + channel[name])
    return ToolRoute(best, direct, channel)
