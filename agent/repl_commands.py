"""The REPL's commands for the conversation itself: /retry, /undo, /copy, /save, /system, /tokens, /show.

A mixin of `agent.repl.Repl` (which reads the line, dispatches and answers). /undo and /retry keep
the store honest: a saved turn is never deleted, it is marked undone (`SessionStore.undo_turn`),
kept for `agent sessions show` and left out of what a resume reads; the retried answer is a new turn
with its own seed and strategy in its record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.text import Text

from agent.model_info import describe_loaded, info_text
from agent.render import one_line, plain
from agent.render_usage import Spent, token_pieces, usage_table
from agent.repl_clipboard import copy_text, osc52
from agent.repl_save import conversation_markdown, save_new_file

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

    from agent.turn import ChatSession

# Strategies that give the same answer to the same message whatever the seed: /retry samples instead.
SEED_FREE = ("greedy", "beam")
RESET = "--reset"

CONVERSATION_COMMANDS: dict[str, str] = {
    "/retry": "answer the last message again (the next seed; greedy and beam sample); the old answer is undone",
    "/undo": "take the last turn back (kept in the store, marked undone)",
    "/copy": "copy the last answer to the clipboard (Ctrl-Y pastes it at the prompt)",
    "/save": "/save FILE writes the conversation as Markdown (never over an existing file)",
    "/system": f"/system TEXT adds TEXT to the system prompt and starts a new conversation; {RESET} removes it",
    "/tokens": "tokens spent by each answer and their speed; /tokens TEXT shows how TEXT is tokenized",
    "/show": "the model: parameters, context length, chat template, tool format",
}


class ConversationCommands:
    """The handlers; `Repl` provides the session, the console, the prompt and `answer`."""

    session: ChatSession
    console: Console
    out: TextIO
    prompt: PromptSession[str]
    spent: list[Spent]
    answer: Callable[[str], None]  # Repl's method: send one message and draw its answer

    def _undo(self) -> str:
        """Undo the last turn in the session and in /tokens' list; returns its question."""
        last = self.session.last_result
        question = self.session.undo()
        for row in self.spent:
            if row.result is last:
                row.undone = True
        return question

    def _kept(self) -> str:
        if self.session.store is None:
            return "not kept: sessions are not being saved"
        return f"kept in session {self.session.session_id}, marked undone"

    def cmd_undo(self, arg: str) -> None:
        kept = self._kept()  # before: undoing the only turn leaves the session id as it is
        question = self._undo()
        left = self.session.turn_index
        self.console.print(plain(f"undone: {one_line(question, 60)!r} ({kept}); "
                                 f"{left} turn{'' if left == 1 else 's'} left in the conversation"))

    def cmd_retry(self, arg: str) -> None:
        previous = self.session.config
        retry = previous.replace(seed=previous.seed + 1)
        how = f"seed {retry.seed}"
        if previous.strategy in SEED_FREE:
            retry = retry.replace(strategy="sample")
            how += (f", sampled at temperature {retry.temperature:g} ({previous.strategy} gives the same answer "
                    "to the same message)")
        kept = self._kept()
        question = self._undo()
        self.console.print(plain(f"retrying {one_line(question, 60)!r} with {how}; the previous answer is {kept}",
                                 "dim"))
        self.session.set_config(retry)
        try:
            self.answer(question)
        finally:
            # the seed stays advanced (a second /retry takes the next one); a borrowed strategy goes back
            self.session.set_config(self.session.config.replace(strategy=previous.strategy))

    def _last_answer(self) -> str | None:
        answers = [m["content"] for m in self.session.messages if m["role"] == "assistant"]
        return answers[-1] if answers else None

    def cmd_copy(self, arg: str) -> None:
        answer = self._last_answer()
        if answer is None:
            self.console.print("no answer to copy yet")
            return
        self.prompt.app.clipboard.set_text(answer)  # Ctrl-Y at the prompt pastes it, clipboard or not
        copied = copy_text(answer, terminal=self.console.is_terminal)
        if copied.program is not None:
            self.console.print(plain(f"copied the last answer ({len(answer)} characters) with {copied.program}"))
            return
        if copied.osc52:
            self.out.write(osc52(answer))
            self.out.flush()
        sent = "; sent to the terminal's clipboard by OSC 52, if the terminal allows it" if copied.osc52 else ""
        self.console.print(Text.assemble(("no system clipboard here", "yellow"), plain(
            f" ({copied.problem}). The answer is in {copied.file}; Ctrl-Y pastes it at the prompt{sent}")))

    def cmd_save(self, arg: str) -> None:
        if not arg:
            raise ValueError("usage: /save FILE (e.g. /save chat.md)")
        path = Path(arg).expanduser()
        turns = self.session.turn_index
        if not turns:
            self.console.print("nothing to save yet")
            return
        text = conversation_markdown(self.session.messages, model_id=self.session.lm.model_id,
                                     session_id=self.session.session_id, system_text=self.session.system_extra)
        save_new_file(path, text)  # ValueError when it exists or cannot be written
        self.console.print(plain(f"saved {turns} turn{'' if turns == 1 else 's'} to {path}"))

    def cmd_system(self, arg: str) -> None:
        if not arg:
            extra = self.session.system_extra
            use = self.session.context_use()
            self.console.print(plain(f"system text: {extra!r}" if extra else "no system text (the default prompt)"))
            self.console.print(plain(f"the whole system prompt: {use.system_tokens} tokens", "dim"))
            return
        before, turns = self.session.session_id, self.session.turn_index
        self.session.set_system_text(None if arg == RESET else arg)
        done = "system text removed" if arg == RESET else "system text set"
        if turns:
            where = f"; session {before} keeps its {turns} turns" if before else ""
            done += f"; a new conversation starts{where}"
        self.console.print(plain(done))

    def cmd_tokens(self, arg: str) -> None:
        if arg:
            self.console.print(token_pieces(self.session.lm.tokenizer, arg))
            return
        if not self.spent:
            self.console.print("no answers yet in this REPL")
        else:
            self.console.print(usage_table(self.spent))
        use = self.session.context_use()
        limit = f"/{use.limit}" if use.limit is not None else ""
        self.console.print(plain(f"the conversation now fills {use.used}{limit} tokens of context", "dim"))

    def cmd_show(self, arg: str) -> None:
        self.console.print(info_text(describe_loaded(self.session.lm, self.session.tool_format.name)))
