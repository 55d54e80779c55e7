"""What a native tool-call format provides, and choosing one from a chat template.

A `FormatSpec` (one per module: hermes, llama3, mistral) says how the model writes a call: the
text that opens it, the grammar of the call around the JSON of one tool, where the JSON is in a
finished call, and the published form of a tool result. `NativeFormat` is a spec bound to one
tokenizer: the island (the text the chat template renders for a tool result, from after the
assistant's call to the start of the next assistant message, `agent.grammar.native.template`),
the grammar literals (a text that is one added token is written as that token), parsing calls
and splitting a response into segments for display.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.grammar.protocol import CallSegment, IslandSegment, TextSegment
from agent.tooling.registry import ToolRegistry
from agent.tooling.runner import ArgumentError, check_args

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Segment = TextSegment | CallSegment | IslandSegment
TRUNCATION_MARKER = " ...[truncated]"  # as the protocol's islands end a cut result
ZERO_WIDTH_SPACE = "\u200b"


class NativeCallError(ValueError):
    """A finished call is not a valid call of a registered tool (the message says why)."""


@dataclass(frozen=True)
class IslandForm:
    """A tool result as the template writes it: prefix + content + suffix."""

    prefix: str
    suffix: str
    json_content: bool  # the content is written as a JSON string (escaped, quoted)
    derived: bool  # read from the chat template (False: the format's published form)

    def text(self, content: str) -> str:
        body = json.dumps(content, ensure_ascii=False) if self.json_content else content
        return self.prefix + body + self.suffix


class FormatSpec(ABC):
    """One model family's tool-call syntax. Subclasses set the class attributes and the grammar."""

    name: str = ""
    markers: tuple[str, ...] = ()  # text in a chat template that means this format
    opener: str = ""  # the text (often one special token) that opens a call
    args_key: str = "arguments"  # the JSON key holding the arguments
    call_end: str = ""  # what ends the call in the template's rendering of one (the island starts after it)
    # A call may follow free text in the same message (Hermes, Mistral); False: a call is a whole
    # message, the opener optional (Llama 3: `{"name": ...}` or `<|python_tag|>{"name": ...}`).
    after_text: bool = True
    json_content: bool = False  # the result is always written as a JSON string (Mistral's `"content": "..."`)
    # A call with placeholders, for the system prompt when the chat template does not show the tools
    # (agent.grammar.native.prompt): the form the model must write.
    call_form: str = ""
    published_json: bool = False  # the published form writes it as a JSON string

    @abstractmethod
    def call_rest(self, lit: Callable[[str], str], tools: str) -> str:
        """The Lark expression of a call after its opener; `tools` is the rule choosing one tool's
        JSON, `lit(text)` a literal for text (a token reference when the text is one added token)."""

    def free_text_start(self) -> str:
        """A regex the free text must start with ("" = any): llama3 text must not look like a call."""
        return ""

    def call_start(self, segment: str) -> int:
        """Where a call opens in the text of a segment (since the last island), or -1."""
        return segment.find(self.opener)

    @abstractmethod
    def call_json(self, call_text: str) -> Any:
        """The call object (a dict with name and arguments) inside a finished call's text."""

    @abstractmethod
    def published_island(self, eos: str) -> tuple[str, str]:
        """(prefix, suffix) of a tool result in the format's published form."""


class NativeFormat:
    """A FormatSpec bound to a tokenizer: grammar literals, the island form, call parsing."""

    def __init__(self, spec: FormatSpec, tokenizer: PreTrainedTokenizerBase, island: IslandForm) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.island = island
        self.added = dict(tokenizer.get_added_vocab())  # text -> id of every added token

    @property
    def name(self) -> str:
        return self.spec.name

    def literal(self, text: str) -> str:
        """A grammar literal for text: a token reference when the tokenizer has it as one added
        token (llguidance matches added tokens only so; the model was trained on that token)."""
        token = self.added.get(text)
        if token is not None:
            return f"<[{token}]>"
        return json.dumps(text)

    def opener_is_token(self) -> bool:
        return self.spec.opener in self.added

    # -- results -----------------------------------------------------------------------------------
    def island_text(self, result: str | None, error: str | None, limit: int) -> str:
        """The island for a result or error (`error: ...`), the content cut at `limit` characters."""
        body = f"error: {error}" if error is not None else (result or "")
        if len(body) > limit:
            body = body[:limit] + TRUNCATION_MARKER
        return self.island.text(self.defuse(body))

    def defuse(self, content: str) -> str:
        """A result that spells an added token (`<|im_end|>`, `<tool_call>`) gets a zero-width space
        after its first character, so it stays text: in this island and when the next turn renders
        the response again through the template, it can never close a message or open a call."""
        for token in self.added:
            if len(token) > 1 and token in content:
                content = content.replace(token, token[0] + ZERO_WIDTH_SPACE + token[1:])
        return content

    def island_ids(self, result: str | None, error: str | None, limit: int) -> list[int]:
        """Token ids of the island: the template's special tokens become their ids (the content
        cannot spell one: see `defuse`)."""
        return list(self.tokenizer.encode(self.island_text(result, error, limit), add_special_tokens=False))

    # -- calls -------------------------------------------------------------------------------------
    def parse_call(self, call_text: str, registry: ToolRegistry) -> tuple[str, dict[str, Any]]:
        """(tool name, typed arguments) of a finished call; NativeCallError saying what is wrong."""
        try:
            obj = self.spec.call_json(call_text)
        except (ValueError, IndexError) as exc:
            raise NativeCallError(f"not a {self.name} tool call: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            raise NativeCallError(f"a {self.name} tool call needs a \"name\" string")
        args = obj.get(self.spec.args_key, {})
        if not isinstance(args, dict):
            raise NativeCallError(f"the {self.spec.args_key!r} of a {self.name} tool call must be an object")
        extra = set(obj) - {"name", self.spec.args_key}
        if extra:
            raise NativeCallError(f"unexpected keys in the tool call: {', '.join(sorted(extra))}")
        name = obj["name"]
        if name not in registry:
            raise NativeCallError(f"unknown tool {name!r}; registered tools: {', '.join(registry.names()) or 'none'}")
        try:
            return name, check_args(registry.get(name), args)
        except ArgumentError as exc:
            raise NativeCallError(str(exc)) from None

    # -- display -----------------------------------------------------------------------------------
    def segments(self, text: str, registry: ToolRegistry | None = None) -> list[Segment]:
        """Text, call and island segments of a response, for the terminal and replay.

        A call is the opening up to the island's prefix; when it does not parse (or no registry
        is given and its JSON is not an object with a name) it stays text.
        """
        out: list[Segment] = []
        pos = 0
        prefix = self.island.prefix
        while pos < len(text):
            rest = text[pos:]
            start = self.spec.call_start(rest)
            if start < 0:
                break
            end = rest.find(prefix, start) if prefix else -1
            call_text = rest[start:end] if end >= 0 else rest[start:]
            call = self._call_segment(call_text, registry)
            if call is None:
                break
            if start:
                out.append(TextSegment(rest[:start]))
            out.append(call)
            pos += start + len(call_text)
            if end < 0:
                return out
            island, length = self._island_segment(text, pos)
            out.append(island)
            pos += length
        if pos < len(text):
            out.append(TextSegment(text[pos:]))
        return out

    def _call_segment(self, call_text: str, registry: ToolRegistry | None) -> CallSegment | None:
        try:
            if registry is not None:
                name, args = self.parse_call(call_text, registry)
            else:
                obj = self.spec.call_json(call_text)
                name, args = obj["name"], dict(obj.get(self.spec.args_key, {}))
        except (ValueError, IndexError, KeyError, TypeError, AttributeError):
            return None
        return CallSegment(str(name), args, call_text, self.name)

    def _island_segment(self, text: str, pos: int) -> tuple[IslandSegment, int]:
        """The island starting at `pos` (its prefix is there) and its length."""
        start = pos + len(self.island.prefix)
        content, end = None, -1
        if self.island.json_content:
            try:
                content, end = json.JSONDecoder().raw_decode(text, start)
            except ValueError:
                content = None
        if not isinstance(content, str):
            found = text.find(self.island.suffix, start) if self.island.suffix else -1
            end = found if found >= 0 else len(text)
            content = text[start:end]
        if text.startswith(self.island.suffix, end):
            end += len(self.island.suffix)
        return IslandSegment(text[pos:end], content), end - pos
