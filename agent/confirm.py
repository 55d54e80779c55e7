"""The side-effect confirmation: `Run note(text='...')? It has side effects.` then `[y/N]`.

Asked in the middle of a streamed answer, right after the call's text. It starts on a line of its
own (the call stays on screen as streamed), shows its default, and reads exactly one key: y runs the
call; n, Enter (the default), Esc, Ctrl-C and Ctrl-D refuse it. Any other key is ignored rather than
taken as an answer, and the keys typed after the answer stay in the input for the next prompt, so a
message typed early is never eaten by the confirmation.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from rich.console import Console
from rich.text import Text

from agent.render import plain

if TYPE_CHECKING:
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output

    from agent.tooling.records import ToolCallRecord

PROMPT = "[y/N] "


def _one_key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    def answer(value: bool):  # noqa: ANN202 - a prompt_toolkit handler factory
        def handler(event: KeyPressEvent) -> None:
            event.app.exit(result=value)
        return handler

    for key in ("y", "Y"):
        bindings.add(key)(answer(True))
    for key in ("n", "N", "enter", "c-c", "c-d"):
        bindings.add(key)(answer(False))
    # eager: a lone Esc answers at once instead of waiting to see whether it starts a key sequence
    bindings.add("escape", eager=True)(answer(False))

    @bindings.add("<any>")
    def _ignore(event: KeyPressEvent) -> None:
        """Any other key is not an answer (and is not inserted)."""

    return bindings


def question(record: ToolCallRecord) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in record.args.items())
    return f"Run {record.tool}({args})? It has side effects."


def confirm_call(record: ToolCallRecord, *, input: Input | None = None, output: Output | None = None,
                 out: TextIO | None = None) -> bool:
    """Ask on its own line below the streamed call whether a side-effect call may run; False unless y."""
    out = out or sys.stdout
    console = Console(file=out, highlight=False, soft_wrap=True)
    out.write("\n")  # the streamed call text ends mid-line: the question must not overwrite it
    console.print(plain(question(record), "bold"))
    session: PromptSession[bool] = PromptSession(key_bindings=_one_key_bindings(), input=input, output=output)
    try:
        allowed = bool(session.prompt(PROMPT))
    except (KeyboardInterrupt, EOFError):
        allowed = False
    console.print(Text("yes, running it" if allowed else "no, not run", style="dim"))
    return allowed


def ask_confirmation(record: ToolCallRecord) -> bool:
    """The confirmation on the terminal (stdin and stdout)."""
    return confirm_call(record)
