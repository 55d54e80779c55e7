"""Which tool a required call uses, chosen from the question as well as from the model's first tokens.

A small model told to open its response with a call picks the tool by the call's form more than by the
question: SmolLM2-135M-Instruct opened 8 of 16 arithmetic questions with `SEARCH(` under `--tool-choice
required` (bench/real_models.py), because the likelihood of each call's opening as a response (the
direct score) hardly depends on what was asked. The noisy channel asks the other way round: how likely is
this question from someone who wants this tool, log P(question | the tool's name and description), which
reads every word of the question. The router adds the two (a product of experts: direct x channel) and
the response must then open with a call of the best tool; the grammar constrains its arguments as usual.

Cost: the prompt runs once on the session's prefix cache (the decode that follows reuses it), then each
tool's opening on top of it and each tool's channel text on its own: a few short forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agent.decoding.kv_cache import PrefixCache, crop_cache, run_prompt
from agent.model.chat_format import prompt_token_ids

if TYPE_CHECKING:
    from transformers import DynamicCache

    from agent.model.runtime import LoadedModel
    from agent.tooling.spec import ToolSpec

# The channel reads at most this many tokens of the question: a long pasted text says no more about the
# tool wanted than its opening does, and each tool pays for every token read.
CHANNEL_TOKENS = 128


@dataclass(frozen=True)
class ToolRoute:
    """The tool a required call must use, and each tool's score (direct + channel, in nats)."""

    tool: str
    direct: dict[str, float]  # log P(the tool's call opening | the prompt)
    channel: dict[str, float]  # log P(the question | the tool's name and description)

    @property
    def scores(self) -> dict[str, float]:
        return {name: self.direct[name] + self.channel[name] for name in self.direct}

    def to_dict(self) -> dict[str, object]:
        return {"tool": self.tool, "direct": self.direct, "channel": self.channel}


def channel_request(spec: ToolSpec) -> str:
    """The user message the channel continues with the question: what a user of this tool would ask."""
    return f"Write a question that the tool `{spec.name}` answers. {spec.name}: {spec.description}"


def continuation_logprob(lm: LoadedModel, cache: DynamicCache, last_logits: torch.Tensor, known: int,
                         tokens: list[int]) -> float:
    """log P(tokens | what `cache` holds), `last_logits` being the logits after it; the cache is cut back
    to its `known` positions afterwards, so it serves the next continuation unchanged."""
    logprobs = torch.log_softmax(last_logits.float(), dim=-1)
    total = float(logprobs[tokens[0]])
    if len(tokens) > 1:
        ids = torch.tensor([tokens[:-1]], dtype=torch.long, device=lm.device)
        with torch.inference_mode():
            logits = lm.run(cache, input_ids=ids).logits[0]
        crop_cache(cache, known)
        steps = torch.log_softmax(logits.float(), dim=-1)
        total += float(sum(steps[i, token] for i, token in enumerate(tokens[1:])))
    return total


def opening_tokens(lm: LoadedModel, text: str, cut: int) -> list[int]:
    """The tokens of `text` (in the tokenizer's own split) that end by character `cut`: the opening of a
    call without the token that already holds part of its sample value."""
    encoded = lm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = [token for token, (_, end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
              if end <= cut]
    return tokens or lm.tokenizer.encode(text[:cut], add_special_tokens=False)


def channel_logprob(lm: LoadedModel, spec: ToolSpec, question_ids: list[int]) -> float:
    """log P(question | a user who wants `spec`), the question written as the assistant's reply to
    channel_request in the model's own chat template."""
    prompt = prompt_token_ids(lm.tokenizer, [{"role": "user", "content": channel_request(spec)}])
    ids = torch.tensor([prompt + question_ids], dtype=torch.long, device=lm.device)
    with torch.inference_mode():
        logits = lm.model(input_ids=ids).logits[0]
    steps = torch.log_softmax(logits[len(prompt) - 1:-1].float(), dim=-1)
    return float(sum(steps[i, token] for i, token in enumerate(question_ids)))


def route_call(lm: LoadedModel, prompt_ids: list[int], question: str, openings: dict[str, tuple[str, int]],
               specs: dict[str, ToolSpec], prefix_cache: PrefixCache | None) -> ToolRoute:
    """The tool whose call the response must open with. `openings`: each tool's call as the response would
    start it and where its arguments begin (agent.grammar.tool_format.call_openings); `specs`: the same
    tools' specs (name, description)."""
    cache, last_logits, _ = run_prompt(lm, prompt_ids, prefix_cache)
    encode = lm.tokenizer.encode
    direct = {name: continuation_logprob(lm, cache, last_logits, len(prompt_ids), opening_tokens(lm, text, cut))
              for name, (text, cut) in openings.items()}
    question_ids = encode(question, add_special_tokens=False)[:CHANNEL_TOKENS] or encode(" ", add_special_tokens=False)
    channel = {name: channel_logprob(lm, specs[name], question_ids) for name in openings}
    best = max(openings, key=lambda name: direct[name] + channel[name])
    return ToolRoute(best, direct, channel)
