"""`agent chat` (the REPL) and `agent run` (one answer, streamed or as JSON)."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import click

from agent.cli.options import CONTEXT, build_session, decoding_options, load_lm
from agent.context import ContextOverflowError
from agent.grammar.errors import GrammarError
from agent.island_view import streamed
from agent.model.backend import BackendCapabilityError, BackendError
from agent.render import printable, terminal_json

if TYPE_CHECKING:
    from agent.config import DecodeConfig
    from agent.render_progress import LiveSearchLine
    from agent.tooling.records import ToolCallRecord


# The shell's convention for a command ended by SIGINT (128 + 2): scripts can tell Ctrl-C from success.
INTERRUPTED = 130
# The answer is complete, but a call with side effects in it was not run (no --yes): the answer may say
# what was asked for as if it were done, so a script must be able to tell.
SIDE_EFFECT_REFUSED = 3


def _always_yes(record: ToolCallRecord) -> bool:
    return True


def _loading(opts: dict[str, Any]) -> AbstractContextManager[object]:
    """A spinner on the terminal while the model stack imports and the model loads (seconds on a CPU);
    nothing when stderr is not a terminal (a script's stderr stays empty)."""
    if not sys.stderr.isatty() or str(opts.get("model") or "").endswith(".gguf"):
        return nullcontext()  # (a GGUF conversion shows its own steps on stderr; two live lines would fight)
    from rich.console import Console  # rich is loaded by the renderer anyway; only here for the spinner

    return Console(stderr=True).status(f"loading {opts.get('model') or 'the demo model'} ...", spinner="dots")


def _search_line(config: DecodeConfig) -> LiveSearchLine | None:
    """The live line of a search (counters, best answer so far) on stderr when it is a terminal (a script's
    stderr stays empty)."""
    if not sys.stderr.isatty():
        return None
    # function-level: the decoder (torch) is loaded by now; `agent run` loads no renderer before it needs one
    from rich.console import Console

    from agent.render_progress import search_line

    return search_line(Console(stderr=True), config)


@click.command(context_settings=CONTEXT)
@decoding_options
@click.option("--session", "session_id", default=None, help="Continue a saved session (see `agent sessions list`).")
@click.option("--plain", is_flag=True, help="Answers as plain text, not drawn as Markdown.")
def chat(session_id: str | None, plain: bool, **opts: Any) -> None:
    """Chat in the REPL. Enter sends; Esc then Enter (or Alt+Enter) starts a new line.

    \b
    Slash commands (/help explains each): /exit /clear /set name=value /model /tools /sessions /resume ID
    /alts /tree [TURN] [--html FILE] /context /retry /undo /copy /save FILE /system [TEXT] /tokens /show.
    Ctrl-C stops a generation (the partial answer is kept); Ctrl-D exits.

    \b
    Examples:
      agent chat
      agent chat --model ~/models/qwen2.5-0.5b-instruct --strategy tree --budget 64
      agent chat --session 3f2a9c
      agent chat -c
      agent chat -s "Answer in French."
    """
    from agent.repl import Repl, ask_confirmation  # prompt_toolkit: only for the REPL

    with _loading(opts):
        session = build_session(opts, _always_yes if opts.get("yes") else ask_confirmation, session_id)
    Repl(session, model_loader=lambda name: load_lm({**opts, "model": name}), markdown=False if plain else None).run()


@click.command(context_settings=CONTEXT)
@click.argument("prompt", required=False)
@decoding_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the response and its figures.")
@click.option("--session", "session_id", default=None, help="Continue a saved session.")
@click.option("--template", "template_name", metavar="NAME", default=None,
              help="Use a saved template (agent templates): PROMPT and stdin become its $input.")
@click.option("--param", "-p", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A value for one of the template's $variables (repeatable).")
def run(prompt: str | None, as_json: bool, session_id: str | None, template_name: str | None,
        params: tuple[tuple[str, str], ...], **opts: Any) -> None:
    """Answer PROMPT once and exit (tools with side effects need --yes).

    When stdin is not a terminal its text is read too: it is the prompt, or with PROMPT it follows it
    after a blank line.

    Exit status: 0 answered; 3 answered, but a tool call with side effects was refused (not run: pass
    --yes to allow them); 130 interrupted (Ctrl-C; the partial answer is kept); 1 an error.

    \b
    Examples:
      agent run "What is 1234 * 5678?"
      echo "What is 1234 * 5678?" | agent run
      cat notes.txt | agent run "Summarise this" -s "Answer in one paragraph."
      agent run -c "And in French?"
      agent run "hello" --model ./my-model --json
      agent run "Give me a JSON object" --grammar json --strategy sample -t 0.8
      cat notes.txt | agent run --template summary -p lang French
    """
    # before the model loads: a missing prompt or template value is reported at once
    if template_name is None:
        if params:
            raise click.UsageError("-p/--param gives a template's variables: use it with --template NAME")
        prompt = _full_prompt(prompt)
    else:
        prompt, opts["system"] = _templated(template_name, _full_prompt(prompt, required=False), dict(params),
                                            opts.get("system"))
    try:
        with _loading(opts):
            session = build_session(opts, _always_yes if opts.get("yes") else None, session_id)
        from agent.grammar.tool_format import island_form  # llguidance: once the model is loaded anyway

        live = _search_line(session.config)

        def write(piece: str) -> None:
            if live is not None:
                live.stop()  # the answer replaces the live line
            _write_to_stdout(piece)

        on_token, end_of_answer = streamed(write, island_form(session.lm, session.tool_format))
        try:
            result = session.ask(prompt, on_token=None if as_json else on_token,
                                 on_progress=live.show if live is not None else None)
        finally:
            if live is not None:
                live.stop()
            end_of_answer()
    except GrammarError as exc:  # the engine gave up on a --grammar mid-answer (the question stays saved)
        if not as_json:
            click.echo("")  # end the streamed part of the answer
        raise click.ClickException(printable(f"grammar: {exc}")) from None
    except ContextOverflowError as exc:  # refused before anything was stored
        raise click.ClickException(printable(str(exc))) from None
    except (BackendError, BackendCapabilityError) as exc:  # a served model went away or cannot do this
        raise click.ClickException(printable(str(exc))) from None
    except KeyboardInterrupt:  # Ctrl-C before there was an answer to keep (loading the model, starting a turn)
        click.echo("\ninterrupted: no answer", err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None
    refused = [call.tool for call in result.tool_calls if call.refused]
    if not as_json:
        click.echo("")
        if result.interrupted:  # the answer so far is printed (and saved); the exit status says it was cut short
            tokens = f"{result.new_tokens} token{'' if result.new_tokens == 1 else 's'}"
            click.echo(f"interrupted: partial answer kept ({tokens})", err=True)
            raise click.exceptions.Exit(INTERRUPTED)
        for tool in refused:
            click.echo(printable(f"refused: {tool} has side effects and was not run (pass --yes to allow it)"),
                       err=True)
        if refused:
            raise click.exceptions.Exit(SIDE_EFFECT_REFUSED)
        return
    payload = {
        "response": result.response,
        "model": session.lm.model_id,
        "strategy": session.config.strategy,
        "seed": session.config.seed,
        "new_tokens": result.new_tokens,
        "seconds": round(result.seconds, 4),
        "finish_reason": result.finish_reason,
        "tool_calls": [call.to_dict() for call in result.tool_calls],
        "refused_side_effects": refused,  # tools not run for want of --yes (the exit status is 3 then)
        "session_id": result.session_id,
        "candidates": result.candidates,
        "forward_passes": result.forward_passes,
        "backward_passes": result.backward_passes,
        "score": result.score,
        "refinement": result.refinement,
        "tool_route": result.tool_route,
        "context_notice": result.context_notice,
        "context_tokens": {"used": result.context_used, "limit": result.context_limit},
        "saved": result.unsaved is None,  # False: a locked database refused the turn (the exit status says so too)
    }
    click.echo(terminal_json(payload))  # the data exact, nothing in it that could drive a terminal
    if result.interrupted:  # finish_reason says so too
        raise click.exceptions.Exit(INTERRUPTED)
    if refused:
        raise click.exceptions.Exit(SIDE_EFFECT_REFUSED)


def _templated(name: str, given: str, params: dict[str, str], system: str | None) -> tuple[str, str | None]:
    """The template's prompt and system text filled in (agent.templates: `given`, PROMPT and stdin, is its
    $input); -s adds to its system text."""
    from agent.templates import load_template  # only when a template is used (its errors: agent.cli._Main)

    text, template_system = load_template(name).fill(given, params)
    systems = [part for part in (template_system, system) if part]
    return text, "\n".join(systems) or None


def _full_prompt(argument: str | None, required: bool = True) -> str:
    """PROMPT, then a blank line and stdin's text when stdin is not a terminal (as `llm` reads it); a usage
    error when neither says anything (unless not `required`: then "")."""
    piped = ""
    if sys.stdin is not None and not sys.stdin.isatty():
        # bytes, decoded leniently: a stray non-UTF-8 byte in a piped file must not end in a traceback
        binary = getattr(sys.stdin, "buffer", None)
        piped = (binary.read().decode("utf-8", errors="replace") if binary is not None else sys.stdin.read()).rstrip()
    parts = [part for part in (argument, piped) if part and part.strip()]
    if not parts and required:
        raise click.UsageError('no prompt: give one as an argument (agent run "What is 2 + 2?") or on stdin '
                               '(echo "What is 2 + 2?" | agent run)')
    return "\n\n".join(parts)


def _write_to_stdout(piece: str) -> None:
    """Stream a piece of the answer, control characters made printable (CliRunner swaps sys.stdout)."""
    sys.stdout.write(printable(piece))
    sys.stdout.flush()
