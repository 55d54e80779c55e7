"""One turn, as data flows: context -> grammar -> decoder (search, model, tools) -> store.

`ChatSession` holds a conversation: its messages, the KV cache of the previous turn, the tool
registry and the decoding configuration. The REPL and the CLI are thin shells around it; it has no
terminal in it, and the store it writes to takes plain records.

Saving: the question is written before decoding (`SessionStore.start_turn`, which draws the turn
number) and the answer with its record, tool calls and candidates after (`finish_turn`, one
transaction). A store that cannot be written (locked by another process past its timeout) never
costs the answer: the turn is kept in memory (`unsaved_turns`), `TurnResult.unsaved` says so, and
it is written, oldest first, before the next turn and on `close()`, which names what still was not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.applicable import tool_choice_problem
from agent.config import DecodeConfig
from agent.context import ContextUse, context_length, context_use, fit_prompt
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.grounding import GroundedConstraint, Grounding, conversation_numbers, number_slots, number_table
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.progress import ProgressSink
from agent.decoding.search import search_response
from agent.decoding.strategies import strategy_for
from agent.decoding.tool_router import ChannelPrompts, ToolRoute, route_call
from agent.demo_model import is_demo_model
from agent.grammar import tool_format
from agent.grammar.islands import ISLAND_PREFIX
from agent.grammar.native import PROTOCOL
from agent.grammar.system_prompt import EXAMPLE_INTRO, EXAMPLE_STOP
from agent.grammar.tokenizer import tokenizer_info
from agent.model.chat_format import Message, stop_strings_for
from agent.model.runtime import LoadedModel
from agent.safe_text import valid_text
from agent.search_tree_record import tree_record
from agent.sessions.errors import StoreError
from agent.sessions.records import AnswerRecord
from agent.tooling.origin import tool_sources
from agent.tooling.records import ToolCallRecord
from agent.tooling.registry import ToolRegistry, callable_tools
from agent.turn_result import TurnResult, UnsavedTurn

if TYPE_CHECKING:
    from agent.sessions.store import SessionStore


class ChatSession:
    """A conversation with one model: history, cached prefix, tools, decoding options, store."""

    def __init__(
        self,
        lm: LoadedModel,
        registry: ToolRegistry | None = None,  # None: no tools
        config: DecodeConfig | None = None,
        *,
        user_grammar: str | None = None,
        confirm: Callable[[ToolCallRecord], bool] | None = None,
        store: SessionStore | None = None,  # None: keep nothing
        session_id: str | None = None,
        system_prompt: str | None = None,
        system_extra: str | None = None,  # the user's text after the default prompt (`--system`)
    ) -> None:
        self.lm = lm
        self.registry = registry
        self.config = config or DecodeConfig()
        self.user_grammar = user_grammar
        self.confirm = confirm
        self.store = store
        self.prefix_cache = PrefixCache()
        self.channel_prompts = ChannelPrompts()  # the tool router's per-tool requests, run once (tool_router)
        self.last_result: TurnResult | None = None
        # the form calls take (our protocol, or the model's own syntax with the tools in its template)
        self.tool_format = tool_format.resolve(lm, registry, self.config.tool_format)
        self.system_extra = system_extra
        if system_prompt is None:
            # the demo model was trained on the protocol's bare tool list; any other model gets examples
            system_prompt = tool_format.system_prompt(self.tool_format, registry,
                                                      examples=not is_demo_model(lm.model_id), extra=system_extra)
        self.system_prompt = system_prompt
        self.messages: list[Message] = []
        self.session_id: str | None = None
        self.unsaved_turns: list[UnsavedTurn] = []  # oldest first
        self._start_messages()
        if session_id is not None:
            self.resume(session_id)

    # -- history -------------------------------------------------------------------------------
    def _start_messages(self) -> None:
        self.messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []


    @property
    def turn_index(self) -> int:
        return sum(1 for m in self.messages if m["role"] == "user")

    def clear(self) -> None:
        """Forget the conversation (a new session starts with the next message). StoreError, with
        nothing forgotten, while turns of this session cannot be saved yet."""
        self._save_or_refuse("starting a new conversation")
        self._start_messages()
        self.prefix_cache.reset()
        self.session_id = None
        self.last_result = None

    def undo(self) -> str:
        """Take the last turn back (`/undo`, `/retry`); returns its question. A saved turn is not deleted: the
        store marks it undone (kept, left out of the history a resume reads). ValueError when there is no
        turn; StoreError, nothing changed, when earlier turns cannot be saved yet or the stored session's
        last turn is not this one (another process wrote to it)."""
        users = [index for index, message in enumerate(self.messages) if message["role"] == "user"]
        if not users:
            raise ValueError("there is no turn to undo")
        self._save_or_refuse("undoing a turn")
        question = self.messages[users[-1]]["content"]
        if self.store is not None and self.session_id is not None:
            stored = [m for m in self.store.messages(self.session_id) if m["role"] == "user" and m["undone"] is None]
            if not stored or stored[-1]["text"] != question:
                raise StoreError(f"the last turn of session {self.session_id} is not this conversation's last "
                                 "question (another process wrote to it): nothing undone")
            self.store.undo_turn(self.session_id, stored[-1]["turn"])
        del self.messages[users[-1]:]
        self.prefix_cache.reset()  # it holds the turn just taken back
        self.last_result = None
        return question

    def set_system_text(self, extra: str | None) -> None:
        """`/system TEXT`: the user's text after the tool instructions (as `--system`), from a new conversation
        on: a stored session keeps the system prompt its turns were answered with. StoreError as `clear`."""
        self.clear()
        self.system_extra = extra
        self.system_prompt = tool_format.system_prompt(self.tool_format, self.registry,
                                                       not is_demo_model(self.lm.model_id), extra)
        self._start_messages()

    def context_use(self) -> ContextUse:
        """How the model's context is spent by the history as it stands (for `/context`)."""
        return context_use(self.lm.tokenizer, self.messages, context_length(self.lm), tools=self.tool_format.tools)

    def resume(self, session_id: str) -> None:
        """Continue a stored session: its messages become the context of the next turn."""
        if self.store is None:
            raise RuntimeError("sessions are not being saved, so none can be resumed")
        self._save_or_refuse(f"resuming session {session_id}")
        full_id = self.store.resolve_id(session_id)  # a clear error when unknown or ambiguous
        self.messages = self.store.history(full_id)
        self.session_id = full_id
        self.prefix_cache.reset()
        self.last_result = None

    # -- decoding ------------------------------------------------------------------------------
    def make_constraint(self, defer_side_effects: bool = False, tool_choice: str | None = None
                        ) -> ResponseConstraint | None:
        return tool_format.response_constraint(
            self.lm, self.tool_format, callable_tools(self.registry, self.config.optional_args), self.user_grammar,
            confirm=self.confirm, defer_side_effects=defer_side_effects, max_calls=self.config.max_tool_calls,
            tool_choice=tool_choice or self.config.tool_choice)

    def route_required_call(self, prompt_ids: list[int], user_text: str, config: DecodeConfig) -> ToolRoute | None:
        """The tool a required call must use when the router decides it (see DecodeConfig.tool_router);
        None when the model's own first tokens decide."""
        tools = callable_tools(self.registry, config.optional_args)
        if config.tool_choice != "required" or tools is None or len(tools) < 2 or self.user_grammar is not None:
            return None
        if not self.lm.holds_weights:  # a served model gives no log-probs of text we choose
            return None
        if not (config.tool_router == "channel" or (config.tool_router == "auto" and self.untrained_on_protocol())):
            return None
        specs = {spec.name: spec for spec in tools}
        return route_call(self.lm, prompt_ids, user_text, tool_format.call_openings(self.tool_format, tools), specs,
                          self.prefix_cache, self.channel_prompts)

    def untrained_on_protocol(self) -> bool:
        """A model that writes our protocol without having been trained on it (not the demo model)."""
        return self.tool_format.name == PROTOCOL and not is_demo_model(self.lm.model_id)

    def number_grounding(self, user_text: str, config: DecodeConfig) -> Grounding | None:
        """The numbers this turn's calls lean to (agent.decoding.grounding); None when not grounding."""
        if self.user_grammar is not None or config.ground_numbers == "off":
            return None
        # auto: not a served model, whose top log-probs often miss the number the conversation wrote
        if config.ground_numbers == "auto" and not (self.untrained_on_protocol() and self.lm.holds_weights):
            return None
        info = tokenizer_info(self.lm.tokenizer, self.lm.vocab_size, self.lm.eos_token_ids)
        messages = self.messages + [{"role": "user", "content": user_text}]
        return Grounding(number_table(info.token_bytes, self.lm.vocab_size),
                         conversation_numbers(messages, ISLAND_PREFIX.lstrip("\n")), asked=number_slots(user_text))

    def set_config(self, config: DecodeConfig) -> None:
        """Decode the next turns with `config` (`/set`); ValueError when its tool choice does not fit the
        tools (a call required without tools, or a name that is not a registered tool)."""
        problem = tool_choice_problem(config.tool_choice, self.registry)
        if problem:
            raise ValueError(problem)
        if config.tool_format != self.config.tool_format:
            self._switch_tool_format(config.tool_format)
        self.config = config

    def _switch_tool_format(self, requested: str) -> None:
        """Write calls in another form from the next turn on: the default system prompt follows it (a
        prompt given by the caller stays); ValueError when the model cannot take that form."""
        fmt = tool_format.resolve(self.lm, self.registry, requested)
        examples = not is_demo_model(self.lm.model_id)
        extra = self.system_extra
        if self.system_prompt == tool_format.system_prompt(self.tool_format, self.registry, examples, extra):
            self.system_prompt = tool_format.system_prompt(fmt, self.registry, examples, extra)
            if self.messages and self.messages[0]["role"] == "system":
                self.messages[0] = {"role": "system", "content": self.system_prompt}
        self.tool_format = fmt
        self.prefix_cache.reset()

    # -- saving --------------------------------------------------------------------------------
    def _create_session(self, store: SessionStore) -> str:
        """The session with its system prompt (turn 0), in one transaction. (Messages after it are the
        unsaved turns, written by `save_pending`.)"""
        system = self.messages[0]["content"] if self.messages and self.messages[0]["role"] == "system" else None
        return store.create_session(self.lm.model_id, self.lm.weights_hash, system_prompt=system)

    def save_pending(self) -> str | None:
        """Write the turns not saved yet, oldest first, stopping at the first failure; returns why
        something is still unsaved (the store's error), None when everything is saved."""
        if self.store is None:
            return None
        try:
            if self.session_id is None and self.unsaved_turns:
                self.session_id = self._create_session(self.store)
            while self.unsaved_turns:
                pending = self.unsaved_turns[0]
                if pending.turn is None:
                    pending.turn = self.store.start_turn(self.session_id, pending.question)
                if pending.answer is None:
                    return None  # being decoded: its answer is saved when it comes
                self.store.finish_turn(self.session_id, pending.turn, pending.answer)
                self.unsaved_turns.pop(0)
        except StoreError as exc:
            return str(exc)
        return None

    def _unsaved_report(self, error: str) -> str:
        listed = "; ".join(p.describe() for p in self.unsaved_turns)
        where = f"session {self.session_id}" if self.session_id else "a new session"
        return f"{error}. Not saved to {where}: {listed}"

    def _save_or_refuse(self, doing: str) -> None:
        error = self.save_pending()
        if error is not None:
            raise StoreError(f"{self._unsaved_report(error)}; they are kept: try again when the database "
                             f"can be written, before {doing}")

    def close(self) -> None:
        """Save what is pending (waiting for the lock once more) and close the store. Raises
        StoreError naming every turn that could not be saved."""
        if self.store is None:
            return
        if self.store.closed:
            error = "the session database was closed before they were written" if self.unsaved_turns else None
        else:
            try:
                error = self.save_pending()
            finally:
                self.store.close()
        if error is not None:
            raise StoreError(self._unsaved_report(error))

    def ask(
        self,
        user_text: str,
        on_token: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_progress: ProgressSink | None = None,
    ) -> TurnResult:
        """Answer one user message; the reply (even a partial, interrupted one) joins the history. A
        streaming strategy's text goes to on_token, a branching search's state to on_progress."""
        # a command-line argument with bytes that are not UTF-8 arrives with lone surrogates, which
        # neither the tokenizer nor SQLite takes: the model, the history and the store see U+FFFD
        user_text = valid_text(user_text)
        # a base model on the plain template must not write the user's next turn, with or without tools
        # (a protocol island is one line, so a header in a tool's result cannot end the response)
        stops = stop_strings_for(self.lm.tokenizer) + ([EXAMPLE_STOP] if EXAMPLE_INTRO in self.system_prompt else [])
        config = self.config.replace(stop=list(self.config.stop) + stops)
        # before anything is stored: a message that cannot fit raises ContextOverflowError here
        limit = context_length(self.lm)
        fitted = fit_prompt(self.lm.tokenizer, self.messages, user_text, config.max_new_tokens, limit,
                            tools=self.tool_format.tools)
        if fitted.max_new_tokens != config.max_new_tokens:
            config = config.replace(max_new_tokens=fitted.max_new_tokens)
        pending = UnsavedTurn(user_text)
        if self.store is not None:
            self.unsaved_turns.append(pending)
            self.save_pending()  # earlier unsaved turns first, then this question (an error: retried below)
        messages = self.messages + [{"role": "user", "content": user_text}]
        try:
            started = time.perf_counter()
            result = self._decode(fitted.prompt_ids, user_text, config, on_token, should_stop, on_progress)
        except BaseException:
            # no answer to keep: a saved question stays as a partial turn, an unsaved one is dropped
            if pending in self.unsaved_turns:
                self.unsaved_turns.remove(pending)
            raise
        result.seconds = time.perf_counter() - started
        result.context_notice, result.context_limit = fitted.notice, limit
        self.messages = messages + [{"role": "assistant", "content": result.response}]
        self.last_result = result
        if self.store is not None:
            pending.answer = self._answer_record(result)
            error = self.save_pending()
            if pending in self.unsaved_turns:
                result.unsaved = (f"{error}; this turn is kept and saved with the next one or when the session "
                                  "closes" if error else "an earlier turn is not saved yet")
        result.turn = pending.turn if pending.turn is not None else self.turn_index
        result.session_id = self.session_id
        return result

    def _decode(self, prompt_ids: list[int], user_text: str, config: DecodeConfig,
                on_token: Callable[[str], None] | None, should_stop: Callable[[], bool] | None,
                on_progress: ProgressSink | None = None) -> TurnResult:
        """Run the configured strategy (agent.decoding.strategies) and turn what it found into a TurnResult.

        A streaming strategy (greedy, sample) sends text to on_token as it comes and keeps the KV
        cache for the next turn; one that explores branches defers side-effect calls to the chosen
        one, manages its own caches and emits its final text once.
        """
        strategy = strategy_for(config.strategy)
        explores = strategy.explores_branches
        make_branch_constraint = None
        hashes: list[str] = []  # the grammar of each constraint made (one grammar per turn)
        route = self.route_required_call(prompt_ids, user_text, config)
        grounding = self.number_grounding(user_text, config)
        if self.registry is not None or self.user_grammar is not None:
            def make_branch_constraint() -> ResponseConstraint | None:
                constraint = self.make_constraint(defer_side_effects=explores,
                                                  tool_choice=route.tool if route is not None else None)
                if constraint is not None and grounding is not None:
                    constraint = GroundedConstraint(constraint, grounding.copy())
                if constraint is not None:
                    hashes.append(constraint.grammar_hash)
                return constraint
        try:
            found = search_response(self.lm, prompt_ids, config, make_constraint=make_branch_constraint,
                                    should_stop=should_stop,
                                    on_token=on_token if strategy.streams_tokens else None,
                                    prefix_cache=self.prefix_cache,
                                    on_progress=on_progress)
        except KeyboardInterrupt:
            if strategy.streams_tokens:
                raise  # the decode loop handles Ctrl-C itself; one outside it is not ours to swallow
            return TurnResult(response="", tool_calls=[], finish_reason="interrupted", new_tokens=0,
                              seconds=0.0, forward_passes=0)
        if not strategy.streams_tokens:
            if on_token is not None and found.text:
                on_token(found.text)
        return TurnResult(
            response=found.text, tool_calls=list(found.tool_calls), finish_reason=found.finish_reason,
            new_tokens=found.new_tokens, seconds=found.seconds, forward_passes=found.forward_passes,
            backward_passes=found.backward_passes, score=found.best.score,
            candidates=[c.to_dict() for c in found.candidates], refinement=dict(found.refinement),
            prompt_tokens=found.prompt_tokens, reused_prompt_tokens=found.reused_prompt_tokens,
            island_tokens=sum(found.best.island_mask),
            grammar_hash=hashes[0] if hashes else None, search=found if explores else None,
            tool_route=route.to_dict() if route is not None else None,
        )

    def tool_setup(self) -> dict[str, Any]:
        """What decides the response besides DecodeConfig: tools, their files, the user grammar."""
        tools = None if self.registry is None else [spec.name for spec in self.registry]
        # resolved: `replay --rerun --tools FILE` matches the files given to the ones recorded
        files = [] if self.registry is None else sorted(
            {str(Path(spec.source).resolve()) for spec in self.registry if spec.source.endswith(".py")})
        return {"tools": tools, "tool_files": files, "tool_sources": None if self.registry is None else
                tool_sources(self.registry), "user_grammar": self.user_grammar}

    def _answer_record(self, result: TurnResult) -> AnswerRecord:
        """What the store keeps of a turn's answer (written in one transaction by `finish_turn`)."""
        # the format the calls took, not `auto`: replay re-renders and reruns it as it was
        config = {**self.config.to_dict(), **self.tool_setup(), "tool_format": self.tool_format.name}
        config["grammar_hash"] = result.grammar_hash
        return AnswerRecord(
            text=result.response, interrupted=result.interrupted, config=config,
            tool_calls=[{**c.to_dict(), "call_text": c.call_text, "island_text": c.island_text, "chosen": True}
                        for c in result.tool_calls],
            candidates=[{**c, "chosen": i == 0} for i, c in enumerate(result.candidates)],
            timings={"seconds": result.seconds},
            search_tree=tree_record(result.search, self.lm.tokenizer),
            token_counts={"new_tokens": result.new_tokens, "prompt_tokens": result.prompt_tokens,
                          "reused_prompt_tokens": result.reused_prompt_tokens, "forward_passes": result.forward_passes,
                          "backward_passes": result.backward_passes, "island_tokens": result.island_tokens},
        )
