"""The `agent` command line: chat (the REPL), run (one answer), and the tool/session/grammar groups.

One module per command group: `conversation` (chat, run), `sessions` (sessions, replay), `tools` (tools,
kb, grammar), `models` (the demo model and cached GGUF conversions); `options` holds what chat and run share.
"""

from __future__ import annotations

import click

from agent.cli.conversation import chat, run
from agent.cli.models import models_command_group
from agent.cli.options import CONTEXT
from agent.cli.sessions import replay_command, sessions_command_group
from agent.cli.templates import templates_command_group
from agent.cli.tools import grammar_command_group, kb_command_group, tools_command_group
from agent.cli.trees import sessions_tree
from agent.paths import HomeError
from agent.safe_text import printable
from agent.templates import TemplateError


class _Main(click.Group):
    """The command group; an agent home that cannot be created, or a template that cannot be saved, found or
    filled in, is a clean error from any command."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (HomeError, TemplateError) as exc:
            raise click.ClickException(printable(str(exc))) from None


@click.group(cls=_Main, context_settings=CONTEXT)
@click.version_option(package_name="agent-shell")
def main() -> None:
    """A terminal agent shell for local language models that searches before it speaks.

    \b
    Examples:
      agent chat                          # the REPL on the shipped demo model
      agent run "What is 1234 * 5678?"    # one answer, then exit
      agent run "hi" --model ./my-model --json
      agent run "hi" --model ~/models/SmolLM2-135M-Instruct.Q4_1.gguf   # converted once
      agent models
      agent tools list
      agent sessions list
      agent grammar list
      agent templates list
    """


for command in (chat, run, tools_command_group, kb_command_group, grammar_command_group, sessions_command_group,
                replay_command, models_command_group, templates_command_group):
    main.add_command(command)
sessions_command_group.add_command(sessions_tree)  # `agent sessions tree` lives in its own module
