"""The REPL: prompt_toolkit input (history, multi-line, completion), streamed answers, slash commands.

A thin shell around `agent.turn.ChatSession`: it reads a line, hands it to the session, and prints
what comes back. Ctrl-C during a generation stops it (the partial answer is kept and saved as
interrupted); Ctrl-C at the prompt clears the line; Ctrl-D exits.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion, WordCompleter
from prompt_toolkit.history import FileHistory, History
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console

from agent.paths import history_path

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
    "/tree": "the search tree of the last answer",
}
HELP_FOOTER = ("Enter sends the message. Esc then Enter (or Alt+Enter) inserts a new line. "
               "Ctrl-C stops a generation, Ctrl-D exits.")


class SlashCompleter(Completer):
    """Completes slash commands at the start of the line, tool names after `/tools` and `CALL(`."""

    def __init__(self, tool_names: Callable[[], list[str]]) -> None:
        self.commands = WordCompleter(list(COMMANDS), sentence=True)
        self.tool_names = tool_names

    def get_completions(self, document, complete_event):  # noqa: ANN001 (prompt_toolkit API)
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
    def _newline(event) -> None:  # noqa: ANN001
        event.current_buffer.insert_text("\n")

    return bindings


def ask_confirmation(record: Any) -> bool:
    """Ask before a tool with side effects runs (interactive sessions)."""
    from prompt_toolkit.shortcuts import confirm

    args = ", ".join(f"{k}={v!r}" for k, v in record.args.items())
    try:
        return confirm(f"Run {record.tool}({args})? It has side effects.")
    except (KeyboardInterrupt, EOFError):
        return False


class Repl:
    def __init__(
        self,
        session: Any,  # agent.turn.ChatSession
        *,
        model_loader: Callable[[str], Any] | None = None,
        input: Any = None,  # prompt_toolkit Input (tests pass a pipe input)
        output: Any = None,  # prompt_toolkit Output
        out: TextIO | None = None,  # where answers are written
        history: History | None = None,
    ) -> None:
        self.session = session
        self.model_loader = model_loader
        self.out = out or sys.stdout
        self.console = Console(file=self.out, highlight=False, soft_wrap=True)
        self.prompt = PromptSession(
            history=history if history is not None else FileHistory(str(history_path())),
            completer=SlashCompleter(self._tool_names),
            key_bindings=key_bindings(),
            multiline=False,
            input=input,
            output=output,
        )
        self.running = True

    def _tool_names(self) -> list[str]:
        registry = self.session.registry
        return registry.names() if registry is not None else []

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        self.console.print(f"[bold]agent[/bold] on {self.session.lm.model_id} "
                           f"({self.session.config.strategy}). /help for commands, Ctrl-D to exit.")
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
        if self.session.store is not None:
            self.session.store.close()

    def answer(self, text: str) -> None:
        def write(piece: str) -> None:
            self.out.write(piece)
            self.out.flush()

        try:
            result = self.session.ask(text, on_token=write)
        except KeyboardInterrupt:
            self.console.print("\n[yellow]\\[interrupted][/yellow]")
            return
        except Exception as exc:  # a failing turn must not end the REPL
            self.console.print(f"\n[red]error:[/red] {exc}")
            return
        self.out.write("\n")
        if result.interrupted:
            self.console.print("[yellow]\\[interrupted][/yellow] partial answer kept")
        self.console.print(f"[dim]{self.summary(result)}[/dim]")

    def summary(self, result: Any) -> str:
        if result.search is not None:
            from agent.render import summary_line

            return summary_line(result.search)
        calls = f", {len(result.tool_calls)} tool call(s)" if result.tool_calls else ""
        return f"{result.new_tokens} tokens in {result.seconds:.2f}s{calls}"

    # -- slash commands ------------------------------------------------------------------------
    def command(self, text: str) -> None:
        name, _, arg = text.partition(" ")
        arg = arg.strip()
        handler = {
            "/help": self.cmd_help, "/exit": self.cmd_exit, "/quit": self.cmd_exit, "/clear": self.cmd_clear,
            "/set": self.cmd_set, "/model": self.cmd_model, "/tools": self.cmd_tools,
            "/sessions": self.cmd_sessions, "/resume": self.cmd_resume, "/alts": self.cmd_alts,
            "/tree": self.cmd_tree,
        }.get(name)
        if handler is None:
            self.console.print(f"[red]unknown command {name}[/red]; /help lists the commands")
            return
        try:
            handler(arg)
        except Exception as exc:
            self.console.print(f"[red]{name}:[/red] {exc}")

    def cmd_help(self, arg: str) -> None:
        for name, text in COMMANDS.items():
            self.console.print(f"  [bold]{name:<10}[/bold] {text}")
        self.console.print(HELP_FOOTER)

    def cmd_exit(self, arg: str) -> None:
        self.running = False

    def cmd_clear(self, arg: str) -> None:
        self.session.clear()
        self.console.print("conversation cleared")

    def cmd_set(self, arg: str) -> None:
        if "=" not in arg:
            settings = ", ".join(f"{k}={v}" for k, v in self.session.config.to_dict().items())
            self.console.print(f"usage: /set name=value   now: {settings}")
            return
        name, value = arg.split("=", 1)
        self.session.config = self.session.config.set_from_text(name, value)
        self.console.print(f"{name.strip()} = {getattr(self.session.config, name.strip().replace('-', '_'))}")

    def cmd_model(self, arg: str) -> None:
        if not arg:
            lm = self.session.lm
            self.console.print(f"{lm.model_id} on {lm.device} ({str(lm.dtype).replace('torch.', '')})")
            return
        if self.model_loader is None:
            raise RuntimeError("this REPL cannot load another model")
        self.session.lm = self.model_loader(arg)
        self.session.clear()
        self.console.print(f"loaded {self.session.lm.model_id}; conversation cleared")

    def cmd_tools(self, arg: str) -> None:
        registry = self.session.registry
        if registry is None:
            self.console.print("tools are off")
            return
        for spec in registry:
            self.console.print(f"  {spec.call_signature} - {spec.description}")

    def cmd_sessions(self, arg: str) -> None:
        store = self.session.store
        if store is None:
            self.console.print("sessions are not being saved (--no-save)")
            return
        for row in store.list_sessions()[:20]:
            self.console.print(f"  {row['id']}  {row.get('created', '')}  {row.get('title') or ''}")

    def cmd_resume(self, arg: str) -> None:
        if not arg:
            raise ValueError("usage: /resume ID")
        self.session.resume(arg)
        self.console.print(f"resumed {self.session.session_id} ({self.session.turn_index} turns)")

    def cmd_alts(self, arg: str) -> None:
        result = self.session.last_result
        if result is None:
            self.console.print("no answer yet")
        elif result.search is not None:
            from agent.render import render_alts

            self.console.print(render_alts(result.search))
        else:
            self.console.print(f"one candidate ({result.candidates[0]['strategy']}), score {result.score:.3f}; "
                               "use /set strategy=tree for alternatives")

    def cmd_tree(self, arg: str) -> None:
        result = self.session.last_result
        if result is None or result.search is None:
            self.console.print("no search tree: the last answer was not made by a search strategy")
            return
        from agent.render import render_tree

        self.console.print(render_tree(result.search))
