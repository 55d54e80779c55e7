"""Decoding configuration: one plain dataclass shared by the CLI, the REPL, the decoder and the store."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

STRATEGIES = ("greedy", "sample", "beam", "best-of-n", "tree", "tree+grad", "mcmc")
# OpenAI's meaning: auto = the model decides; required = the response opens with a call; none = no
# call is possible. Any other value names the one tool the response must open with.
TOOL_CHOICES = ("auto", "required", "none")
# How calls are written: `protocol` (our SEARCH(...) / CALL(...) form, explained in the system prompt)
# or a model's own trained syntax shown through its chat template's `tools` (agent.grammar.native).
# `auto` picks from the chat template.
TOOL_FORMATS = ("auto", "protocol", "hermes", "llama3", "mistral")
# Whether a call may carry a tool's optional arguments: `allow` (the model decides) or `omit` (only the
# required ones; the tool's defaults apply). Small models fill optional arguments with invented values.
OPTIONAL_ARGS = ("allow", "omit")
# Which tool a required call uses: `model` (the model's first tokens decide, under the grammar), `channel`
# (the question decides too: agent.decoding.tool_router) or `auto` (channel for a local model on our
# protocol that was not trained on it, model otherwise).
TOOL_ROUTERS = ("auto", "model", "channel")
# Whether numbers in a call's arguments lean to the ones the conversation wrote (agent.decoding.grounding):
# `on`, `off` or `auto` (on for a local model on our protocol that was not trained on it).
GROUND_NUMBERS = ("auto", "on", "off")


@dataclass
class DecodeConfig:
    """Everything that decides which response a turn produces (stored with each turn)."""

    strategy: str = "greedy"
    seed: int = 0
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    min_p: float = 0.0  # 0.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off
    stop: list[str] = field(default_factory=list)
    # search strategies (beam / best-of-n / tree / tree+grad)
    beam_width: int = 4
    num_samples: int = 8
    budget: int = 0  # forward passes a search may spend; 0 = auto (see search_budget)
    top_candidates: int = 4
    grad_steps: int = 8
    # mcmc: the target is p(x)^alpha over whole responses (1 = the model itself; larger = sharper)
    alpha: float = 4.0
    # Any search ends at this wall-clock limit (seconds, 0 = none) with the best answer it has so far.
    time_limit: float = 0.0
    # A search's token tree holds at most this many bytes of KV and next-token log-probs; past it the
    # worst branches are dropped and remembered as dead ends (agent.decoding.kv_cache.TreeMemory).
    kv_budget_bytes: int = 2 * 1024**3
    grammar_hash: str | None = None
    # Tool calls one response may make (0 = no limit). After the last one no call can open, so a
    # model that keeps retrying a failing call has to answer in words instead.
    max_tool_calls: int = 8
    tool_choice: str = "auto"  # one of TOOL_CHOICES, or a tool's name
    tool_format: str = "auto"  # one of TOOL_FORMATS (a turn stores the format it resolved to)
    optional_args: str = "allow"  # one of OPTIONAL_ARGS
    tool_router: str = "auto"  # one of TOOL_ROUTERS (only `--tool-choice required` is routed)
    ground_numbers: str = "auto"  # one of GROUND_NUMBERS

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0 turns it off)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if not 0.0 <= self.min_p < 1.0:
            raise ValueError("min_p must be in [0, 1)")
        if self.budget < 0:
            raise ValueError("budget must be >= 0 (0 = twice max_new_tokens)")
        if not 0.0 <= self.time_limit < float("inf"):
            raise ValueError("time_limit must be a finite number of seconds >= 0 (0 = no limit)")
        if self.kv_budget_bytes < 1:
            raise ValueError("kv_budget_bytes must be at least 1")
        if not 0.0 < self.alpha < float("inf"):
            raise ValueError("alpha must be a finite number > 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.max_tool_calls < 0:
            raise ValueError("max_tool_calls must be >= 0 (0 = no limit)")
        if self.tool_choice not in TOOL_CHOICES and not re.fullmatch(r"[A-Za-z_][\w.-]*", self.tool_choice):
            raise ValueError(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or a tool's name, "
                             f"not {self.tool_choice!r}")
        if self.tool_format not in TOOL_FORMATS:
            raise ValueError(f"unknown tool_format {self.tool_format!r}; choose one of {', '.join(TOOL_FORMATS)}")
        if self.optional_args not in OPTIONAL_ARGS:
            raise ValueError(f"optional_args must be one of {', '.join(OPTIONAL_ARGS)}, not {self.optional_args!r}")
        if self.ground_numbers not in GROUND_NUMBERS:
            raise ValueError(f"ground_numbers must be one of {', '.join(GROUND_NUMBERS)}, not {self.ground_numbers!r}")
        if self.tool_router not in TOOL_ROUTERS:
            raise ValueError(f"tool_router must be one of {', '.join(TOOL_ROUTERS)}, not {self.tool_router!r}")

    @property
    def search_budget(self) -> int:
        """The forward passes a search may spend: `budget`, or when 0, twice max_new_tokens.

        Twice the token limit lets a search finish one full-length answer and backtrack as much again.
        """
        return self.budget if self.budget > 0 else 2 * self.max_new_tokens

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> DecodeConfig:
        return dataclasses.replace(self, **changes)

    def set_from_text(self, name: str, value: str) -> DecodeConfig:
        """Return a copy with one field set from its text form (for `/set name=value`)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        key = name.strip().replace("-", "_")
        if key not in fields:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(fields))}")
        current = getattr(self, key)
        text = value.strip()
        parsed: Any
        if isinstance(current, bool):
            parsed = text.lower() in ("1", "true", "yes", "on")
        elif isinstance(current, int):
            parsed = int(text)
        elif isinstance(current, float):
            parsed = float(text)
        elif isinstance(current, list):
            parsed = [s for s in text.split(",") if s]
        elif key == "grammar_hash":
            parsed = text or None
        else:
            parsed = text
        return self.replace(**{key: parsed})
