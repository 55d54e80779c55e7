"""The REPL: prompt_toolkit input (history, multi-line, completion), streamed answers, slash commands.

A thin shell around `agent.turn.ChatSession`: it reads a line, hands it to the session, and prints
what comes back. Ctrl-C during a generation stops it (the partial answer is kept and saved as
interrupted); Ctrl-C at the prompt clears the line; Ctrl-D exits.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.clipboard import InMemoryClipboard
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, WordCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output
from rich.console import Console
from rich.text import Text

from agent.applicable import setting_warning
from agent.confirm import ask_confirmation, confirm_call
from agent.decoding.progress import SearchProgress
from agent.grammar.tool_format import island_form
from agent.island_view import streamed
from agent.paths import history_path, history_writable
from agent.render import plain, printable, render_alts, session_lines, tool_lines
from agent.render_markdown import MarkdownStream
from agent.render_progress import LiveSearchLine, search_line
from agent.render_tree import render_stored_tree, render_tree
from agent.render_usage import Spent, answer_line
from agent.repl_commands import CONVERSATION_COMMANDS, ConversationCommands
from agent.repl_save import save_new_file
from agent.search_tree_record import tree_record
from agent.sessions.records import StoredTree
from agent.sessions.store import StoreError
from agent.tree_html import tree_html

if TYPE_CHECKING:
    from agent.model.backend import ModelBackend
    from agent.model.runtime import LoadedModel
    from agent.tooling.records import ToolCallRecord
    from agent.turn import ChatSession

COMMANDS: dict[str, str] = {
    "/help": "show this help",
    "/exit": "leave the REPL (Ctrl-D does too)",
    "/clear": "forget the conversation; the next message starts a new session",
    "/set": "/set name=value changes a decoding option (e.g. /set temperature=0.7, /set strategy=tree)",
    "/model": "/model shows the model; /model PATH loads another one",
    "/tools": "list the registered tools",
    "/sessions": "list saved sessions",
    "/resume": "/resume ID continues a saved session",
    "/alts": "the other candidates of the last answer, with scores",
    "/tree": "the search tree of the last answer; /tree N the stored one of turn N; --html FILE writes a page",
    "/context": "how full the model's context is: system prompt, each turn, room left",
    **CONVERSATION_COMMANDS,
}
HELP_FOOTER = ("Enter sends the message. Esc then Enter (or Alt+Enter) inserts a new line. "
               "Ctrl-C stops a generation, Ctrl-D exits.")


class SlashCompleter(Completer):
    """Completes slash commands at the start of the line, tool names after `/tools` and `CALL(`."""

    def __init__(self, tool_names: Callable[[], list[str]]) -> None:
        self.commands = WordCompleter(list(COMMANDS), sentence=True)
        self.tool_names = tool_names

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        if text.startswith("/") and " " not in text:
            yield from self.commands.get_completions(document, complete_event)
            return
        word = document.get_word_before_cursor()
        before_word = text[: len(text) - len(word)]
        if before_word.endswith("CALL(") or text.startswith("/tools "):
            for name in self.tool_names():
                if name.startswith(word):
                    yield Completion(name, start_position=-len(word))


def key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return bindings


class Repl(ConversationCommands):
    def __init__(
        self,
        session: ChatSession,
        *,
        model_loader: Callable[[str], LoadedModel | ModelBackend] | None = None,
        input: Input | None = None,  # tests pass a pipe input
        output: Output | None = None,
        out: TextIO | None = None,  # where answers are written
        history: History | None = None,
        markdown: bool | None = None,  # answers drawn as Markdown; None: when `out` is a terminal
    ) -> None:
        self.session = session
        self.model_loader = model_loader
        self.out = out or sys.stdout
        self.console = Console(file=self.out, highlight=False, soft_wrap=True)
        self.markdown = self.console.is_terminal if markdown is None else markdown
        self.stream: MarkdownStream | None = None  # the answer being drawn as Markdown
        self.status: LiveSearchLine | None = None  # the live line while a search runs
        self.spent: list[Spent] = []  # the answers given here, for /tokens
        if history is None:
            # a read-only agent home: the history lives in memory (prompt_toolkit would print a traceback
            # and "Press ENTER" on every message trying to append to the file)
            history = FileHistory(str(history_path())) if history_writable() else InMemoryHistory()
            if isinstance(history, InMemoryHistory):
                self.console.print(plain("history is not kept: the agent home cannot be written", "dim"))
        self.prompt = PromptSession(
            history=history,
            completer=SlashCompleter(self._tool_names),
            key_bindings=key_bindings(),
            multiline=False,
            clipboard=InMemoryClipboard(),  # /copy puts the answer here too: Ctrl-Y pastes it
            input=input,
            output=output,
        )
        self.running = True
        self.input, self.output = input, output
        if session.confirm is ask_confirmation:
            # the terminal default becomes this REPL's own: the same input (what is typed after the
            # answer stays there for the next message) and the same output as the streamed answer
            session.confirm = self.confirm

    def confirm(self, record: ToolCallRecord) -> bool:
        self._stop_searching()
        if self.stream is not None:
            self.stream.pause()  # the answer so far stays drawn; the question goes below it
        return confirm_call(record, input=self.input, output=self.output, out=self.out)

    def _tool_names(self) -> list[str]:
        registry = self.session.registry
        return registry.names() if registry is not None else []

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        self.console.print(Text.assemble(("agent", "bold"), plain(
            f" on {self.session.lm.model_id} ({self.session.config.strategy}). /help for commands, Ctrl-D to exit.")))
        while self.running:
            try:
                text = self.prompt.prompt("> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            text = text.strip()
            if not text:
                continue
            if text.startswith("/"):
                self.command(text)
            else:
                self.answer(text)
        try:
            self.session.close()  # writes turns a locked database refused earlier
        except StoreError as exc:
            self.console.print(Text.assemble(("not saved:", "red"), " ", plain(str(exc))))

    def _searching(self) -> LiveSearchLine | None:
        """A live line while a strategy that explores branches searches (it shows its answer only when it is
        chosen): its counters and best answer so far; none off a terminal or for the streaming strategies."""
        return search_line(self.console, self.session.config) if self.console.is_terminal else None

    def _show_progress(self, progress: SearchProgress) -> None:
        if self.status is not None:
            self.status.show(progress)

    def _stop_searching(self) -> None:
        if self.status is not None:
            self.status.stop()  # the answer (or a question) takes the line
            self.status = None

    def answer(self, text: str) -> None:
        def write(piece: str) -> None:
            self.out.write(printable(piece))
            self.out.flush()

        self.stream = MarkdownStream(self.console) if self.markdown else None
        shown = self.stream.write if self.stream else write

        def show(piece: str) -> None:
            self._stop_searching()
            shown(piece)

        on_token, end_of_answer = streamed(show, island_form(self.session.lm, self.session.tool_format))
        self.status = self._searching()
        try:
            try:
                result = self.session.ask(text, on_token=on_token, on_progress=self._show_progress)
            finally:
                self._stop_searching()
                end_of_answer()  # what the view held back
                if self.stream is not None:
                    self.stream.end()
                    self.stream = None
        except KeyboardInterrupt:
            self.console.print(Text("\n[interrupted]", style="yellow"))
            return
        except Exception as exc:  # a failing turn must not end the REPL
            self.console.print(Text.assemble("\n", ("error:", "red"), " ", plain(str(exc))))
            return
        if not (self.markdown and self.console.is_terminal):
            self.out.write("\n")  # the streamed text ends mid-line (a live area on a terminal ends its line itself)
        if result.context_notice is not None:
            self.console.print(plain(result.context_notice, "dim"))
        if result.interrupted:
            kept = "partial answer kept" if result.response else "no answer was found before the interruption"
            self.console.print(Text.assemble(("[interrupted]", "yellow"), " ", kept))
        if result.unsaved is not None:
            self.console.print(Text.assemble(("not saved yet:", "yellow"), " ", plain(result.unsaved)))
        self.spent.append(Spent(result.turn, result))
        self.console.print(plain(answer_line(result), "dim"))

    # -- slash commands ------------------------------------------------------------------------
    def command(self, text: str) -> None:
        name, _, arg = text.partition(" ")
        arg = arg.strip()
        handler = {
            "/help": self.cmd_help, "/exit": self.cmd_exit, "/quit": self.cmd_exit, "/clear": self.cmd_clear,
            "/set": self.cmd_set, "/model": self.cmd_model, "/tools": self.cmd_tools,
            "/sessions": self.cmd_sessions, "/resume": self.cmd_resume, "/alts": self.cmd_alts,
            "/tree": self.cmd_tree, "/context": self.cmd_context, "/retry": self.cmd_retry, "/undo": self.cmd_undo,
            "/copy": self.cmd_copy, "/save": self.cmd_save, "/system": self.cmd_system, "/tokens": self.cmd_tokens,
            "/show": self.cmd_show,
        }.get(name)
        if handler is None:
            self.console.print(Text.assemble(plain(f"unknown command {name}", "red"), "; /help lists the commands"))
            return
        try:
            handler(arg)
        except Exception as exc:  # a failing command must not end the REPL
            self.console.print(Text.assemble(plain(f"{name}:", "red"), " ", plain(str(exc))))

    def cmd_help(self, arg: str) -> None:
        for name, text in COMMANDS.items():
            self.console.print(Text.assemble(("  " + f"{name:<10}", "bold"), " ", text))
        self.console.print(HELP_FOOTER, markup=False)

    def cmd_exit(self, arg: str) -> None:
        self.running = False

    def cmd_clear(self, arg: str) -> None:
        self.session.clear()
        self.console.print("conversation cleared")

    def cmd_set(self, arg: str) -> None:
        if "=" not in arg:
            settings = ", ".join(f"{k}={v}" for k, v in self.session.config.to_dict().items())
            self.console.print(plain(f"usage: /set name=value   now: {settings}"))
            return
        name, value = arg.split("=", 1)
        self.session.set_config(self.session.config.set_from_text(name, value))
        field = name.strip().replace("-", "_")
        self.console.print(plain(f"{name.strip()} = {self.session.config.to_dict()[field]}"))
        warning = setting_warning(self.session.config, field)
        if warning:
            self.console.print(plain(f"warning: {warning}", "yellow"))

    def cmd_model(self, arg: str) -> None:
        if not arg:
            lm = self.session.lm
            where = f"on {lm.device} ({str(lm.dtype).replace('torch.', '')})" if lm.holds_weights else "(served)"
            self.console.print(plain(f"{lm.model_id} {where}"))
            return
        if self.model_loader is None:
            raise RuntimeError("this REPL cannot load another model")
        self.session.lm = self.model_loader(arg)
        self.session.clear()
        self.console.print(plain(f"loaded {self.session.lm.model_id}; conversation cleared"))

    def cmd_tools(self, arg: str) -> None:
        registry = self.session.registry
        if registry is None:
            self.console.print("tools are off")
            return
        self.console.print(tool_lines(registry))

    def cmd_sessions(self, arg: str) -> None:
        store = self.session.store
        if store is None:
            self.console.print("sessions are not being saved (--no-save)")
            return
        self.console.print(session_lines(store.list_sessions()[:20]))

    def cmd_resume(self, arg: str) -> None:
        if not arg:
            raise ValueError("usage: /resume ID")
        self.session.resume(arg)
        self.console.print(plain(f"resumed {self.session.session_id} ({self.session.turn_index} turns)"))

    def cmd_alts(self, arg: str) -> None:
        result = self.session.last_result
        if result is None:
            self.console.print("no answer yet")
        elif result.search is not None:
            self.console.print(render_alts(result.search))
        elif not result.candidates:
            self.console.print("no alternatives: the answer was interrupted before there was one")
        else:
            self.console.print(plain(f"one candidate ({result.candidates[0]['strategy']}), score {result.score:.3f}; "
                                     "use /set strategy=tree for alternatives"))

    def cmd_tree(self, arg: str) -> None:
        words = arg.split()
        html = None
        if "--html" in words:
            at = words.index("--html")
            if at + 1 >= len(words):
                raise ValueError("usage: /tree [TURN] [--html FILE]")
            html = Path(words.pop(at + 1)).expanduser()
            words.pop(at)
        if len(words) > 1 or (words and not words[0].isdigit()):
            raise ValueError("usage: /tree [TURN] [--html FILE]")
        result = self.session.last_result
        if not words and html is None and result is not None and result.search is not None:
            self.console.print(render_tree(result.search, self.session.lm.tokenizer))  # with its passes and KV reuse
            return
        tree = self._stored_tree(int(words[0]) if words else None)
        if tree is None:
            return
        if html is None:
            self.console.print(render_stored_tree(tree))
            return
        title = f"search tree of turn {tree['turn']}" + (f", session {self.session.session_id}"
                                                          if self.session.session_id else "")
        save_new_file(html, tree_html(tree, title=title))  # ValueError when it exists or cannot be written
        self.console.print(plain(f"wrote the {len(tree['nodes'])} nodes of turn {tree['turn']}'s tree to {html}"))

    def _stored_tree(self, turn: int | None) -> StoredTree | None:
        """The tree of the last answer (as the store keeps it), or the stored one of `turn`; None, said why."""
        result = self.session.last_result
        live = tree_record(result.search, self.session.lm.tokenizer) if result is not None else None
        if turn is None and live is not None:
            return StoredTree(turn=result.turn, best_node=live["best_node"], nodes=live["nodes"])
        store, session_id = self.session.store, self.session.session_id
        if store is None or session_id is None:
            self.console.print("no search tree: the last answer was not made by a search strategy")
            return None
        turn = store.next_turn(session_id) - 1 if turn is None else turn  # after /resume: the last turn
        stored = store.search_tree(session_id, turn)
        if stored is None:
            self.console.print(plain(f"no search tree stored for turn {turn} of session {session_id}"))
        return stored

    def cmd_context(self, arg: str) -> None:
        use = self.session.context_use()
        limit = f"{use.limit} tokens" if use.limit is not None else "unknown"
        lines = [f"context: {limit} ({self.session.lm.model_id})", f"  system prompt  {use.system_tokens} tokens"]
        lines += [f"  turn {index:<9} {tokens} tokens" for index, tokens in enumerate(use.turn_tokens, 1)]
        lines.append(f"  in all         {use.used} tokens")
        if use.limit is not None:
            room = use.limit - use.used
            answer = self.session.config.max_new_tokens
            lines.append(f"  room left      {room} tokens (an answer may take up to {answer}; older turns are "
                         "shortened, then left out of the prompt, when the next one would not fit)")
        self.console.print(plain("\n".join(lines)))
